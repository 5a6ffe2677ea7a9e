/**
 * The chat's surfaces: the sidebar view and any "Open in Editor" panels. All draw the same conversation;
 * the extension sends each change to every surface whose page is loaded. A hidden surface's page is torn
 * down, says `ready` again when shown, and gets the whole state then.
 */
import * as vscode from 'vscode';
import { HostMessage, MessageError, WebviewMessage, parseWebviewMessage } from '../protocol/webview';
import { webviewHtml } from './webviewHtml';

/** Where a message came from, so the answer to `ready` goes back to that page only. */
export interface ChatSurface {
  post(message: HostMessage): void;
}

export class ChatViews implements vscode.WebviewViewProvider, vscode.Disposable {
  static readonly viewType = 'ficoco.chat';
  static readonly panelType = 'ficoco.chatPanel';

  /** every live page, and whether it has said `ready` since it last loaded */
  private readonly pages = new Map<vscode.Webview, { ready: boolean }>();
  private readonly received = new vscode.EventEmitter<{ message: WebviewMessage; from: ChatSurface }>();
  private readonly disposables: vscode.Disposable[] = [this.received];
  /** Every valid message from a chat page, with the page it came from. */
  readonly onDidReceiveMessage = this.received.event;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  resolveWebviewView(view: vscode.WebviewView): void {
    this.attach(view.webview, 'FiCoCo Chat');
    view.onDidChangeVisibility(() => {
      if (!view.visible) this.markUnloaded(view.webview);
    });
    view.onDidDispose(() => this.pages.delete(view.webview));
  }

  /** Shows the sidebar chat (VS Code creates the view on first focus). */
  async reveal(): Promise<void> {
    await vscode.commands.executeCommand(`${ChatViews.viewType}.focus`);
  }

  /** The same chat in an editor tab. */
  openInEditor(): void {
    const panel = vscode.window.createWebviewPanel(ChatViews.panelType, 'FiCoCo Chat', vscode.ViewColumn.Beside, {
      enableScripts: true,
      enableFindWidget: true,
      localResourceRoots: [vscode.Uri.joinPath(this.extensionUri, 'dist')],
    });
    this.attach(panel.webview, 'FiCoCo Chat');
    panel.onDidChangeViewState(() => {
      if (!panel.visible) this.markUnloaded(panel.webview);
    });
    panel.onDidDispose(() => this.pages.delete(panel.webview));
  }

  /** Sends a change to every loaded page. */
  broadcast(message: HostMessage): void {
    for (const [webview, page] of this.pages) if (page.ready) void webview.postMessage(message);
  }

  dispose(): void {
    for (const disposable of this.disposables) disposable.dispose();
  }

  private attach(webview: vscode.Webview, title: string): void {
    const dist = vscode.Uri.joinPath(this.extensionUri, 'dist');
    webview.options = { enableScripts: true, localResourceRoots: [dist] };
    webview.html = webviewHtml({
      cspSource: webview.cspSource,
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.js')).toString(),
      styleUri: webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.css')).toString(),
      title,
    });
    this.pages.set(webview, { ready: false });
    const surface: ChatSurface = { post: (message) => void webview.postMessage(message) };
    this.disposables.push(webview.onDidReceiveMessage((data: unknown) => this.receive(webview, data, surface)));
  }

  private receive(webview: vscode.Webview, data: unknown, surface: ChatSurface): void {
    let message: WebviewMessage;
    try {
      message = parseWebviewMessage(data);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      this.log.warn(`Ignored a message from the FiCoCo chat: ${error.message}`);
      return;
    }
    if (message.type === 'ready') this.pages.set(webview, { ready: true });
    this.received.fire({ message, from: surface });
  }

  private markUnloaded(webview: vscode.Webview): void {
    const page = this.pages.get(webview);
    if (page) page.ready = false;
  }
}
