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

/** A fresh nonce and a strict CSP on every call: only our bundled script runs, images come from the webview or data: URLs. */
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
    <p id="empty" class="empty">Ask about an image: right-click it in the Explorer, or run “FiCoCo: Ask About Image…”.</p>
    <section id="transcript" class="transcript" role="log" aria-live="polite" aria-label="Questions and answers"></section>
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
