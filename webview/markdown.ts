/**
 * Answers are markdown from a model: untrusted. markdown-it renders them with raw HTML and images disabled, DOMPurify
 * cleans the result (markdown-it keeps links such as command: and vscode: that must not reach the page), and code
 * blocks get Copy and Insert buttons. Where DOMPurify cannot run, the answer is shown as plain text.
 */
import createDOMPurify from 'dompurify';
import MarkdownIt from 'markdown-it';
import { button } from './controls';

// No images: an answer must not show pictures the model chose (data: URLs pass the CSP), only link to http(s).
const markdown = new MarkdownIt({ html: false, linkify: false, breaks: true }).disable('image');

export interface CodeActions {
  copy(text: string): void;
  insert(text: string): void;
}

/** `html` cleaned by DOMPurify, links only to http(s), no images; undefined when DOMPurify cannot run in this window. */
export function sanitizeHtml(html: string, window: Window): string | undefined {
  const purify = createDOMPurify(window as Window & typeof globalThis);
  if (!purify.isSupported) return undefined;
  // DOMPurify lets <img> keep a data: source whatever ALLOWED_URI_REGEXP says.
  return purify.sanitize(html, { ALLOWED_URI_REGEXP: /^https?:/i, FORBID_TAGS: ['img'] });
}

/** Replaces `element`'s content with the rendered markdown. */
export function renderMarkdown(element: HTMLElement, text: string, actions: CodeActions): void {
  const doc = element.ownerDocument;
  const html = doc.defaultView ? sanitizeHtml(markdown.render(text), doc.defaultView) : undefined;
  if (html === undefined) {
    element.textContent = text;
    return;
  }
  element.innerHTML = html;
  for (const block of element.querySelectorAll('pre')) addCodeActions(doc, block, actions);
}

function addCodeActions(doc: Document, block: HTMLPreElement, actions: CodeActions): void {
  const code = block.textContent ?? '';
  const bar = doc.createElement('div');
  bar.className = 'code-actions';
  bar.append(
    button(doc, {
      label: 'Copy',
      className: 'copy-code',
      title: 'Copy the code',
      onClick: () => actions.copy(code),
    }),
    button(doc, {
      label: 'Insert at Cursor',
      className: 'insert-code',
      title: 'Insert the code where the cursor is in the editor',
      onClick: () => actions.insert(code),
    }),
  );
  block.before(bar);
}
