/**
 * Answers are markdown from a model: untrusted. markdown-it renders them with raw HTML and images disabled, DOMPurify
 * cleans the result (markdown-it keeps links such as command: and vscode: that must not reach the page), and code
 * blocks get Copy and Insert buttons. Where DOMPurify cannot run, the answer is shown as plain text.
 *
 * A streamed answer is drawn again as it grows. The whole text is parsed each time (a later line can change an earlier
 * block: a reference definition, a list item that makes the list loose), but only the top-level blocks whose HTML
 * changed are sanitized and replaced: the blocks before them keep their elements, so what the reader selected or
 * focused in them stays, and drawing a frame costs the changed tail rather than the whole answer. A fenced code block
 * that only grew (still streaming) takes the new code as text in its element, so a long one is not drawn again whole.
 */
import createDOMPurify, { type DOMPurify } from 'dompurify';
import MarkdownIt, { type Token } from 'markdown-it';
import { button } from './controls';

// No images: an answer must not show pictures the model chose (data: URLs pass the CSP), only link to http(s).
const markdown = new MarkdownIt({ html: false, linkify: false, breaks: true }).disable('image');

export interface CodeActions {
  copy(text: string): void;
  insert(text: string): void;
}

/** One top-level block of the text: its HTML before sanitizing; for a fenced code block, its info string and code. */
interface Block {
  html: string;
  fence?: { info: string; code: string };
}

/** One top-level block as drawn, and the nodes it became in the element. */
interface DrawnBlock extends Block {
  nodes: ChildNode[];
}

/** What each element shows, block by block, as renderMarkdown last drew it. */
const drawn = new WeakMap<HTMLElement, DrawnBlock[]>();
/** One DOMPurify per window: making one costs more than sanitizing a paragraph. */
const purifiers = new WeakMap<object, DOMPurify>();

function purifier(window: Window): DOMPurify {
  let purify = purifiers.get(window);
  if (!purify) {
    purify = createDOMPurify(window as Window & typeof globalThis);
    purifiers.set(window, purify);
  }
  return purify;
}

/** `html` cleaned by DOMPurify, links only to http(s), no images; undefined when DOMPurify cannot run in this window. */
export function sanitizeHtml(html: string, window: Window): string | undefined {
  const purify = purifier(window);
  if (!purify.isSupported) return undefined;
  // DOMPurify lets <img> keep a data: source whatever ALLOWED_URI_REGEXP says.
  return purify.sanitize(html, { ALLOWED_URI_REGEXP: /^https?:/i, FORBID_TAGS: ['img'] });
}

/** Shows `text` rendered in `element`, redrawing only the top-level blocks that differ from what it shows now. */
export function renderMarkdown(element: HTMLElement, text: string, actions: CodeActions): void {
  const doc = element.ownerDocument;
  const window = doc.defaultView;
  if (!window || !purifier(window).isSupported) {
    drawn.delete(element);
    element.textContent = text;
    return;
  }
  const blocks = parseBlocks(text);
  const before = drawnBlocks(element);
  const after = blocks.map((block, i): DrawnBlock => {
    const old = before[i];
    if (old?.html === block.html) return old;
    if (old && appendCode(old, block)) return { ...block, nodes: old.nodes };
    const nodes = blockNodes(doc, window, block.html, actions);
    // In the old block's place (the blocks around it keep their elements), or after the last.
    if (old) {
      old.nodes[0]!.before(...nodes);
      removeNodes(old);
    } else element.append(...nodes);
    return { ...block, nodes };
  });
  for (const old of before.slice(blocks.length)) removeNodes(old);
  drawn.set(element, after);
}

/** One block's HTML, sanitized, as nodes of `doc` not yet in it, its code blocks with their actions. */
function blockNodes(doc: Document, window: Window, html: string, actions: CodeActions): ChildNode[] {
  // Parsed in a detached element, then moved in: the sanitized HTML holds no image that could load meanwhile.
  const holder = doc.createElement('div');
  // A block starts on a line of its own: only whitespace between blocks, and it keeps the block's first element in
  // happy-dom (the tests' DOM), where DOMPurify loses the first node of what it cleans.
  holder.innerHTML = sanitizeHtml(`\n${html}`, window) ?? '';
  for (const block of holder.querySelectorAll('pre')) addCodeActions(doc, block, actions);
  // A block whose sanitized HTML is empty still takes its place, so the blocks after it find theirs.
  if (holder.childNodes.length === 0) holder.append(doc.createTextNode(''));
  return [...holder.childNodes];
}

/**
 * Appends to a drawn code block the code that `block`, the same fence grown, adds; false when `block` is not that.
 * The code goes in as a text node, which is what sanitizing the fence's escaped HTML would make of it.
 */
function appendCode(old: DrawnBlock, block: Block): boolean {
  if (!old.fence || !block.fence || old.fence.info !== block.fence.info) return false;
  if (!block.fence.code.startsWith(old.fence.code)) return false;
  const code = old.nodes.find((node): node is Element => node.nodeName === 'PRE')?.querySelector('code');
  if (!code) return false;
  code.append(block.fence.code.slice(old.fence.code.length));
  return true;
}

function removeNodes(block: DrawnBlock): void {
  for (const node of block.nodes) node.parentNode?.removeChild(node);
}

/** The blocks the element shows, or none when something else changed its content since they were drawn. */
function drawnBlocks(element: HTMLElement): DrawnBlock[] {
  const blocks = drawn.get(element) ?? [];
  const nodes = blocks.flatMap((block) => block.nodes);
  if (nodes.length === element.childNodes.length && nodes.every((node, i) => element.childNodes[i] === node))
    return blocks;
  element.replaceChildren();
  return [];
}

/** Each top-level block of `text`, parsed as a whole. */
function parseBlocks(text: string): Block[] {
  const env = {};
  const tokens = markdown.parse(text, env);
  const blocks: Block[] = [];
  for (let start = 0; start < tokens.length;) {
    const end = blockEnd(tokens, start);
    const block = tokens.slice(start, end);
    const html = markdown.renderer.render(block, markdown.options, env);
    const fence = block.length === 1 && block[0]!.type === 'fence' ? block[0]! : undefined;
    blocks.push(fence ? { html, fence: { info: fence.info, code: fence.content } } : { html });
    start = end;
  }
  return blocks;
}

/** The index after the top-level block that starts at `start`: its closing token, or itself when it has none. */
function blockEnd(tokens: Token[], start: number): number {
  let depth = 0;
  for (let i = start; i < tokens.length; i++) {
    depth += tokens[i]!.nesting;
    if (depth <= 0) return i + 1;
  }
  return tokens.length;
}

function addCodeActions(doc: Document, block: HTMLPreElement, actions: CodeActions): void {
  // Read when pressed: a code block still streaming grows after its buttons are made.
  const code = () => block.textContent ?? '';
  const bar = doc.createElement('div');
  bar.className = 'code-actions';
  bar.append(
    button(doc, {
      label: 'Copy',
      className: 'copy-code',
      title: 'Copy the code',
      onClick: () => actions.copy(code()),
    }),
    button(doc, {
      label: 'Insert at Cursor',
      className: 'insert-code',
      title: 'Insert the code where the cursor is in the editor',
      onClick: () => actions.insert(code()),
    }),
  );
  block.before(bar);
}
