/**
 * Answers are markdown from a model: untrusted. markdown-it renders them with raw HTML disabled, DOMPurify
 * cleans the result, and code blocks get Copy and Insert buttons.
 */
import createDOMPurify from 'dompurify';
import MarkdownIt from 'markdown-it';

const markdown = new MarkdownIt({ html: false, linkify: false, breaks: true });

export interface CodeActions {
  copy(text: string): void;
  insert(text: string): void;
}

/** Replaces `element`'s content with the rendered markdown. */
export function renderMarkdown(element: HTMLElement, text: string, actions: CodeActions): void {
  const doc = element.ownerDocument;
  const purify = createDOMPurify(doc.defaultView as unknown as Window & typeof globalThis);
  element.innerHTML = purify.sanitize(markdown.render(text), { ALLOWED_URI_REGEXP: /^https?:/i });
  for (const block of element.querySelectorAll('pre')) addCodeActions(doc, block, actions);
}

function addCodeActions(doc: Document, block: HTMLPreElement, actions: CodeActions): void {
  const code = block.textContent ?? '';
  const bar = doc.createElement('div');
  bar.className = 'code-actions';
  for (const [label, run] of [
    ['Copy', () => actions.copy(code)],
    ['Insert at Cursor', () => actions.insert(code)],
  ] as const) {
    const button = doc.createElement('vscode-button');
    button.setAttribute('secondary', '');
    button.textContent = label;
    button.addEventListener('click', run);
    bar.append(button);
  }
  block.before(bar);
}
