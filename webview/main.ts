/**
 * The webview's entry point (bundled to dist/webview.js): registers the components the page uses and starts the chat.
 */
// Only the components used are imported, so the bundle carries only them (and Lit).
import '@vscode-elements/elements/dist/vscode-badge/index.js';
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-collapsible/index.js';
import type { WebviewMessage } from '../src/protocol/webview';
import { type PageState, startChat } from './chat';
import { readImageFile } from './composer';

/** Provided by VS Code inside webviews; callable once per page. */
declare function acquireVsCodeApi(): PageState & { postMessage(message: WebviewMessage): void };

const vscode = acquireVsCodeApi();
const chat = startChat(document, (message) => vscode.postMessage(message), readImageFile, vscode);
window.addEventListener('message', (event: MessageEvent<unknown>) => chat.receive(event.data));
