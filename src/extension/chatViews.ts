/**
 * The chat's surfaces: the sidebar view and any "Open in Editor" panels. All draw the same conversation;
 * the extension sends each change to every surface whose page is loaded. A hidden surface's page is torn
 * down, says `ready` again when shown, and gets the whole state then. After a window reload VS Code hands
 * the editor tabs back (deserializeWebviewPanel), and they draw the restored conversation.
 */
import * as vscode from 'vscode';
import { HostMessage, MessageError, WebviewMessage, parseWebviewMessage } from '../protocol/webview';
import { webviewHtml } from './webviewHtml';

/** Where a message came from, so the answer to `ready` goes back to that page only. */
export interface ChatSurface {
  post(message: HostMessage): void;
}

export class ChatViews implements vscode.WebviewViewProvider, vscode.WebviewPanelSerializer, vscode.Disposable {
  static readonly viewType = 'ficoco.chat';
  static readonly panelType = 'ficoco.chatPanel';

  /** every live page: whether it has said `ready` since it last loaded, and its listeners, disposed when it closes */
  private readonly pages = new Map<vscode.Webview, { ready: boolean; listeners: vscode.Disposable[] }>();
  private readonly received = new vscode.EventEmitter<{ message: WebviewMessage; from: ChatSurface }>();
  /** Every valid message from a chat page, with the page it came from. */
  readonly onDidReceiveMessage = this.received.event;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  resolveWebviewView(view: vscode.WebviewView): void {
    this.attach(
      view.webview,
      view.onDidChangeVisibility(() => {
        if (!view.visible) this.markUnloaded(view.webview);
      }),
    );
    view.onDidDispose(() => this.detach(view.webview));
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
    this.attachPanel(panel);
  }

  /** An editor tab of the chat open before a window reload, which VS Code brings back empty: the chat page again. */
  deserializeWebviewPanel(panel: vscode.WebviewPanel): Thenable<void> {
    this.log.info('An editor tab of the chat came back after a window reload.');
    this.attachPanel(panel);
    return Promise.resolve();
  }

  private attachPanel(panel: vscode.WebviewPanel): void {
    const media = vscode.Uri.joinPath(this.extensionUri, 'media');
    panel.iconPath = {
      light: vscode.Uri.joinPath(media, 'ficoco-light.svg'),
      dark: vscode.Uri.joinPath(media, 'ficoco-dark.svg'),
    };
    this.attach(
      panel.webview,
      panel.onDidChangeViewState(() => {
        if (!panel.visible) this.markUnloaded(panel.webview);
      }),
    );
    panel.onDidDispose(() => this.detach(panel.webview));
  }

  /** Sends a change to every loaded page. */
  broadcast(message: HostMessage): void {
    for (const [webview, page] of this.pages) if (page.ready) void webview.postMessage(message);
  }

  dispose(): void {
    for (const webview of [...this.pages.keys()]) this.detach(webview);
    this.received.dispose();
  }

  /** Loads the chat page into a webview; `listener` (its view's) is disposed with the page's own when it closes. */
  private attach(webview: vscode.Webview, listener: vscode.Disposable): void {
    const dist = vscode.Uri.joinPath(this.extensionUri, 'dist');
    webview.options = { enableScripts: true, localResourceRoots: [dist] };
    webview.html = webviewHtml({
      cspSource: webview.cspSource,
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.js')).toString(),
      styleUri: webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.css')).toString(),
      title: 'FiCoCo Chat',
    });
    const surface: ChatSurface = { post: (message) => void webview.postMessage(message) };
    const received = webview.onDidReceiveMessage((data: unknown) => this.receive(webview, data, surface));
    this.pages.set(webview, { ready: false, listeners: [listener, received] });
  }

  /** Forgets a closed view or tab with its listeners (each tab opened and closed kept them until deactivation). */
  private detach(webview: vscode.Webview): void {
    for (const listener of this.pages.get(webview)?.listeners ?? []) listener.dispose();
    this.pages.delete(webview);
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
    const page = this.pages.get(webview);
    if (message.type === 'ready' && page) page.ready = true;
    this.received.fire({ message, from: surface });
  }

  private markUnloaded(webview: vscode.Webview): void {
    const page = this.pages.get(webview);
    if (page) page.ready = false;
  }
}
