/**
 * The "FiCoCo" webview panel: one panel, reused for every question. The extension keeps the transcript;
 * the webview is not retained when hidden, and redraws from a snapshot whenever it (re)loads and says `ready`.
 */
import * as vscode from 'vscode';
import { AnswerStatsView, AnswerStopReason, HostMessage, MessageError, TurnImage, WebviewMessage, parseWebviewMessage } from '../protocol/webview';
import { Transcript } from './transcript';
import { webviewHtml } from './webviewHtml';

/** One question being answered: stream into it, then end it once. Stop in the webview cancels `token`. */
export interface AnswerTurn {
  readonly token: vscode.CancellationToken;
  appendText(text: string): void;
  finish(stopReason: AnswerStopReason, stats?: AnswerStatsView): void;
  fail(message: string): void;
}

export class AnswerPanel implements vscode.Disposable {
  static readonly viewType = 'ficoco.answers';

  private panel: vscode.WebviewPanel | undefined;
  /** whether the webview has said `ready` since it last loaded; messages before that are covered by the snapshot */
  private webviewReady = false;
  private readonly transcript = new Transcript();
  private readonly running = new Map<string, vscode.CancellationTokenSource>();

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  /** Adds a question to the transcript and shows the panel (created on first use). */
  startTurn(question: string, images: TurnImage[]): AnswerTurn {
    const { turnId, message } = this.transcript.addTurn(question, images);
    const cancellation = new vscode.CancellationTokenSource();
    this.running.set(turnId, cancellation);
    this.show();
    this.post(message);
    let ended = false;
    const end = (message: HostMessage): void => {
      if (ended) return;
      ended = true;
      this.post(message);
      this.running.delete(turnId);
      cancellation.dispose();
    };
    return {
      token: cancellation.token,
      appendText: (text) => {
        if (!ended) this.post(this.transcript.appendText(turnId, text));
      },
      finish: (stopReason, stats) => end(this.transcript.finish(turnId, stopReason, stats)),
      fail: (message) => end(this.transcript.fail(turnId, message)),
    };
  }

  dispose(): void {
    this.panel?.dispose();
    this.cancelAll();
  }

  private show(): void {
    if (this.panel) {
      this.panel.reveal(undefined, true);
      return;
    }
    const dist = vscode.Uri.joinPath(this.extensionUri, 'dist');
    const panel = vscode.window.createWebviewPanel(
      AnswerPanel.viewType,
      'FiCoCo',
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true },
      { enableScripts: true, retainContextWhenHidden: false, enableFindWidget: true, localResourceRoots: [dist] },
    );
    const webview = panel.webview;
    webview.html = webviewHtml({
      cspSource: webview.cspSource,
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.js')).toString(),
      styleUri: webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.css')).toString(),
      title: 'FiCoCo',
    });
    this.panel = panel;
    this.webviewReady = false;
    panel.onDidChangeViewState(() => {
      // A hidden webview is torn down; it says `ready` again when it is shown.
      if (!panel.visible) this.webviewReady = false;
    });
    webview.onDidReceiveMessage((data: unknown) => this.receive(data));
    panel.onDidDispose(() => {
      this.panel = undefined;
      this.webviewReady = false;
      // Nobody can see or stop those answers any more.
      this.cancelAll();
    });
  }

  private receive(data: unknown): void {
    let message: WebviewMessage;
    try {
      message = parseWebviewMessage(data);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      this.log.warn(`Ignored a message from the FiCoCo webview: ${error.message}`);
      return;
    }
    switch (message.type) {
      case 'ready':
        this.webviewReady = true;
        void this.panel?.webview.postMessage(this.transcript.snapshot());
        return;
      case 'stop':
        this.running.get(message.turnId)?.cancel();
        return;
    }
  }

  private post(message: HostMessage): void {
    if (this.panel && this.webviewReady) void this.panel.webview.postMessage(message);
  }

  private cancelAll(): void {
    for (const cancellation of this.running.values()) cancellation.cancel();
  }
}
