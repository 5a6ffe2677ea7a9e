/** The FiCoCo webview's page. Free of 'vscode' (the panel passes in the URIs as strings) so it is plainly testable. */
import { randomBytes } from 'node:crypto';

export interface WebviewPage {
  /** webview.cspSource: the origin the webview serves local resources from */
  cspSource: string;
  /** dist/webview.js and dist/webview.css as webview URIs */
  scriptUri: string;
  styleUri: string;
  title: string;
}

/**
 * A fresh nonce and a strict CSP on every call: only our bundled script runs, images come from the webview or data:
 * URLs.
 */
export function webviewHtml(page: WebviewPage, nonce: string = randomBytes(18).toString('base64')): string {
  const csp = [
    "default-src 'none'",
    `img-src ${page.cspSource} data:`,
    `style-src ${page.cspSource}`,
    `script-src 'nonce-${nonce}'`,
    `font-src ${page.cspSource}`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <meta http-equiv="Content-Security-Policy" content="${escapeAttribute(csp)}">
  <meta name="viewport" content="width=device-width, initial-scale=1.0">
  <link rel="stylesheet" href="${escapeAttribute(page.styleUri)}">
  <title>${escapeText(page.title)}</title>
</head>
<body>
  <main>
    <section id="transcript" class="transcript" role="log" aria-live="polite" aria-label="Questions and answers"></section>
    <p id="empty" class="empty">Paste a screenshot (Ctrl+V / Cmd+V), hold Shift and drop an image, or attach one, then ask about it.</p>
    <p id="notice" class="notice" role="status" hidden></p>
    <div id="composer" class="composer" role="group" aria-label="Ask about images">
      <div id="pending" class="pending" role="list" aria-label="Images to send with the question" hidden></div>
      <textarea id="question" rows="3" aria-label="Question" placeholder="Ask about the image… (Enter sends, Shift+Enter for a new line)"></textarea>
      <div class="composer-actions">
        <vscode-button id="attach" secondary title="Attach an image file">Attach Image…</vscode-button>
        <vscode-button id="new-chat" secondary title="Start a new conversation">New Chat</vscode-button>
        <vscode-button id="send" title="Send (Enter)">Send</vscode-button>
      </div>
      <p class="drop-hint">Hold Shift to drop images here.</p>
    </div>
  </main>
  <script nonce="${escapeAttribute(nonce)}" src="${escapeAttribute(page.scriptUri)}"></script>
</body>
</html>
`;
}

function escapeText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escapeAttribute(text: string): string {
  return escapeText(text).replace(/"/g, '&quot;');
}
