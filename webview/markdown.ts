/**
 * Answers are markdown from a model: untrusted. markdown-it renders them with raw HTML and images disabled, DOMPurify
 * cleans the result (markdown-it keeps links such as command: and vscode: that must not reach the page), and code
 * blocks get Copy and Insert buttons. Where DOMPurify cannot run, the answer is shown as plain text.
 *
 * A streamed answer is drawn again as it grows. Text added at the end changes only the last two top-level blocks (the
 * last may grow, or become part of the one before: a paragraph "2" that becomes "2." continues the list above it), so
 * the text is parsed again from the second last block on. Only a reference definition reaches further back (it makes
 * links in earlier blocks): a new or changed one has the whole text parsed again. Only the blocks whose HTML changed
 * are sanitized and replaced: the blocks before them keep their elements, so what the reader selected or focused in
 * them stays, and drawing a frame costs the changed tail rather than the whole answer. A list, a list item, a quote or
 * a table whose own tags stayed the same is compared block by block inside, so a finished item or row keeps its
 * elements while the next one streams; each block inside is sanitized within its containers' tags, as a whole render
 * parses it. A fenced code block that only grew (still streaming) takes the new code as text in its element, so a long
 * one is not drawn again whole; at the end of the text (at the top level, or at the end of quotes and of the last item
 * of lists), only its opening and last lines and the new text are parsed, its HTML is made only if something reads it,
 * and once closed it settles (nothing after it can join it). A caller that only appends to the text says so
 * (`appended`), so a frame costs the new text, not the whole answer's length.
 */
import createDOMPurify, { type DOMPurify } from 'dompurify';
import MarkdownIt, { type Env, type Token } from 'markdown-it';
import { button } from './controls';

/** How answers parse: raw HTML stays text, bare addresses stay text, a line break is a break. */
const OPTIONS = { html: false, linkify: false, breaks: true };
// No images: an answer must not show pictures the model chose (data: URLs pass the CSP), only link to http(s).
const markdown = new MarkdownIt(OPTIONS).disable('image');

/**
 * Parses text whose first line opens a fence inside lists and quotes (list markers turned to spaces, quote markers
 * kept) as the fence's lines parse there. On the first line, the top level's blocks and each quote's are indented as
 * what follows there: a list item around it starts its content there at most, so a line indented less than the fence,
 * or than a quote's marker, ends the fence here (conservative: the item's content may start before, and go on).
 */
const nestedFenceLines = new MarkdownIt(OPTIONS).disable('image');
nestedFenceLines.block.ruler.before('table', 'first_line_indent', (state, line) => {
  if (line === 0) state.blkIndent = state.sCount[0]!;
  // Only sets the indent the rules after it parse with: the first line is still theirs.
  return false;
});

export interface CodeActions {
  copy(text: string): void;
  insert(text: string): void;
}

/**
 * One block of the text: its HTML before sanitizing; for a fenced code block, its info string and code; for a
 * container (a list, a list item, a quote, a table or its head or body), its own tags and the blocks inside it.
 */
interface Block {
  html: string;
  fence?: Fence;
  container?: Container;
}

/** A fenced code block's info string and code; for one that grew from the block before it, what it added. */
interface Fence {
  info: string;
  code: string;
  grown?: { from: Block; code: string };
}

/** A block drawn as its tags with its blocks inside, one by one. */
interface Container {
  open: string;
  close: string;
  blocks: Block[];
}

/** One block as drawn: the nodes it became, and for a container drawn block by block, its blocks in its element. */
interface DrawnBlock {
  block: Block;
  nodes: ChildNode[];
  blocks?: DrawnBlock[];
}

/** Where blocks are drawn, and what their code blocks' buttons do. */
interface Page {
  doc: Document;
  window: Window;
  actions: CodeActions;
}

/** Reference definitions by label, as markdown-it keeps them. */
type References = NonNullable<Env['references']>;

/** An element's text as last parsed: its top-level blocks, of which all but the last two are settled. */
interface ParsedText {
  text: string;
  blocks: Block[];
  settledBlocks: number;
  /** Where the second last block starts in the text: what follows is parsed again when the text grows. */
  settledEnd: number;
  /** The definitions before settledEnd, which the text after it is parsed with. */
  settledReferences: References;
  /** Every definition in the text: the links of all its blocks were made with these. */
  references: References;
  /** The fence that ends the text, at the top level or in lists and quotes, which more code grows without parsing. */
  lastFence?: LastFence;
}

/** A fenced code block at the end of the text: what parsing its last line and the text after it needs. */
interface LastFence {
  /** Its opening line, such as "```ts\n" or "> ```ts\n"; with spaces where list item markers before it were. */
  opening: string;
  /** Whether it ends the last item of a list or a quote (nested or not) rather than being a top-level block. */
  nested: boolean;
  /** Where its last line, which may be a closing fence or become one, starts in the text. */
  lastLineStart: number;
  /** Its code before its last line: lines that more text cannot change. */
  codeBeforeLastLine: string;
  /** Its last line's code, which more text only adds to while the fence stays open. */
  lastLineCode: string;
}

const NOTHING_PARSED: ParsedText = {
  text: '',
  blocks: [],
  settledBlocks: 0,
  settledEnd: 0,
  settledReferences: {},
  references: {},
};

/** What each element's text parsed into, as renderMarkdown last parsed it. */
const parsed = new WeakMap<HTMLElement, ParsedText>();
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

/** What the caller of renderMarkdown knows of the text. */
export interface RenderOptions {
  /** The text is the one last rendered in the element with more at its end, as a streamed answer grows. */
  appended?: boolean;
}

/**
 * Shows `text` rendered in `element`, redrawing only the blocks that differ from what it shows now. With `appended`,
 * the text is not compared with the one last rendered, which costs its whole length each time.
 */
export function renderMarkdown(
  element: HTMLElement,
  text: string,
  actions: CodeActions,
  { appended = false }: RenderOptions = {},
): void {
  const doc = element.ownerDocument;
  const window = doc.defaultView;
  if (!window || !purifier(window).isSupported) {
    drawn.delete(element);
    element.textContent = text;
    return;
  }
  const parsedText = parseText(parsed.get(element), text, appended);
  parsed.set(element, parsedText);
  drawn.set(element, drawBlocks(element, drawnBlocks(element), parsedText.blocks, { doc, window, actions }, []));
}

/**
 * Draws `blocks` in `parent`, which shows `before` and is the element of the innermost of the containers `within`: a
 * block that differs from the one in its place replaces it.
 */
function drawBlocks(
  parent: ParentNode,
  before: DrawnBlock[],
  blocks: Block[],
  page: Page,
  within: Container[],
): DrawnBlock[] {
  const after = blocks.map((block, i): DrawnBlock => {
    const old = before[i];
    const kept = old && updateInPlace(old, block, page, within);
    if (kept) return kept;
    const fresh = drawBlock(block, page, within);
    // In the old block's place (the blocks around it keep their elements), or after the last.
    if (old) {
      old.nodes[0]!.before(...fresh.nodes);
      removeNodes(old);
    } else parent.append(...fresh.nodes);
    return fresh;
  });
  for (const old of before.slice(blocks.length)) removeNodes(old);
  return after;
}

/** `old` showing `block` in its own nodes (the same, a fence grown, a container's tags the same), or undefined. */
function updateInPlace(old: DrawnBlock, block: Block, page: Page, within: Container[]): DrawnBlock | undefined {
  // A settled block, or one beside a growing fence, is the block drawn.
  if (old.block === block) return old;
  // Before comparing HTML, which would escape all its code: a fence grown from the one drawn knows what it added, and
  // a container with the same tags is compared block by block (a fence growing inside is not escaped either).
  const grown = block.fence?.grown;
  if (grown?.from === old.block && appendCode(old, grown.code)) return { block, nodes: old.nodes };
  const [before, after] = [old.block.container, block.container];
  if (old.blocks && before && after && before.open === after.open && before.close === after.close) {
    const element = containerElement(old.nodes)!;
    return { block, nodes: old.nodes, blocks: drawBlocks(element, old.blocks, after.blocks, page, [...within, after]) };
  }
  if (old.block.html === block.html) return old;
  const added = addedCode(old.block, block);
  if (added !== undefined && appendCode(old, added)) return { block, nodes: old.nodes };
  return undefined;
}

/** `block` as new nodes: a container as its sanitized tags with its blocks drawn inside, any other block whole. */
function drawBlock(block: Block, page: Page, within: Container[]): DrawnBlock {
  const { container } = block;
  if (container) {
    const nodes = sanitizedNodes(container.open + container.close, page, within);
    const element = containerElement(nodes);
    if (element)
      return { block, nodes, blocks: drawBlocks(element, [], container.blocks, page, [...within, container]) };
  }
  return { block, nodes: sanitizedNodes(block.html, page, within) };
}

function containerElement(nodes: ChildNode[]): Element | undefined {
  return nodes.find((node): node is Element => node.nodeType === node.ELEMENT_NODE);
}

/**
 * `html`, sanitized inside the tags of the containers `within` (a table row parses only in a table), as nodes of the
 * page's document not yet in it, its code blocks with their actions.
 */
function sanitizedNodes(html: string, { doc, window, actions }: Page, within: Container[]): ChildNode[] {
  // Parsed in a detached element, then moved in: the sanitized HTML holds no image that could load meanwhile.
  const holder = doc.createElement('div');
  // The containers' opening tags without the line break after them, which would be a node of the block's own.
  const open = within.map((container) => container.open.trimEnd()).join('');
  const close = within
    .map((container) => container.close)
    .reverse()
    .join('');
  // A block starts on a line of its own: only whitespace between blocks, and it keeps the block's first element in
  // happy-dom (the tests' DOM), where DOMPurify loses the first node of what it cleans.
  holder.innerHTML = sanitizeHtml(`\n${open}${html}${close}`, window) ?? '';
  for (const block of holder.querySelectorAll('pre')) addCodeActions(doc, block, actions);
  const parent = within.reduce<Element>((element) => element.firstElementChild!, holder);
  // A block whose sanitized HTML is empty still takes its place, so the blocks after it find theirs.
  if (parent.childNodes.length === 0) parent.append(doc.createTextNode(''));
  return [...parent.childNodes];
}

/** The code that `block` adds to the fence `old`, when it is that fence grown. */
function addedCode(old: Block, block: Block): string | undefined {
  const [before, after] = [old.fence, block.fence];
  if (!before || !after || before.info !== after.info || !after.code.startsWith(before.code)) return undefined;
  return after.code.slice(before.code.length);
}

/**
 * Appends `added` to the code element of a drawn code block; false when it has none. The code goes in as a text
 * node, which is what sanitizing the fence's escaped HTML would make of it.
 */
function appendCode(old: DrawnBlock, added: string): boolean {
  const code = old.nodes.find((node): node is Element => node.nodeName === 'PRE')?.querySelector('code');
  if (!code) return false;
  code.append(added);
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

/** Blocks drawn as their tags with their blocks inside: lists, items, quotes, tables and their heads and bodies. */
const CONTAINERS = new Set([
  'bullet_list_open',
  'ordered_list_open',
  'list_item_open',
  'blockquote_open',
  'table_open',
  'thead_open',
  'tbody_open',
]);

/** `text` parsed: from where `previous` settled when `text` only adds to it (`appended` says so), else whole. */
function parseText(previous: ParsedText | undefined, text: string, appended: boolean): ParsedText {
  if (previous && (appended || text.startsWith(previous.text))) {
    const grown = growLastFence(previous, text) ?? parseAfterSettled(previous, text);
    // A definition added or still streaming may change a link in a settled block (rare): parse the whole text then.
    if (JSON.stringify(grown.references) === JSON.stringify(previous.references)) return grown;
  }
  return parseAfterSettled(NOTHING_PARSED, text);
}

/** `text` parsed from where `previous` settled, with the blocks that settled before it. */
function parseAfterSettled(previous: ParsedText, text: string): ParsedText {
  const tail = text.slice(previous.settledEnd);
  const env: Env = { references: { ...previous.settledReferences } };
  const tokens = markdown.parse(tail, env);
  const ranges = blockRanges(tokens, 0, tokens.length);
  // The blocks before the second last settle, and the second last too when it is a fence (a closed one: text after it
  // cannot join it); markdown-it gives each block's first line in what it parsed.
  const secondLast = ranges.at(-2);
  const firstUnsettled = secondLast && tokens[secondLast[0]]!.type === 'fence' ? ranges.length - 1 : ranges.length - 2;
  const firstUnsettledLine = secondLast ? tokens[ranges[firstUnsettled]![0]]!.map?.[0] : undefined;
  const settledEnd = previous.settledEnd + (firstUnsettledLine === undefined ? 0 : lineStart(tail, firstUnsettledLine));
  const last = lastFenceToken(tokens);
  return {
    text,
    blocks: [
      ...previous.blocks.slice(0, previous.settledBlocks),
      ...ranges.map((range) => blockOf(tokens, range, env)),
    ],
    settledBlocks: previous.settledBlocks + (firstUnsettledLine === undefined ? 0 : firstUnsettled),
    settledEnd,
    settledReferences: withDefinitions(previous.settledReferences, text.slice(previous.settledEnd, settledEnd)),
    references: env.references ?? {},
    lastFence: last && lastFenceOf(last.fence, last.nested, tail, previous.settledEnd),
  };
}

/**
 * `text` parsed as `previous` and a longer last fence, when `text` adds only code to the fence that ends `previous`:
 * only the fence's opening line, its last line and the new text are parsed, not the fence's whole code. Undefined
 * when the new text closes the fence or ends its list item or quote (or `previous` ends otherwise): the text after the
 * block before the last is parsed as usual.
 */
function growLastFence(previous: ParsedText, text: string): ParsedText | undefined {
  const fence = previous.lastFence;
  if (!fence) return undefined;
  // A fence's lines are code or its closing line whatever the lines before them are, at the top level; in a list, a
  // line indented less than the fence's opening line may end its item, and in a quote, a line without its marker
  // (blank, or lazy: one that would continue a paragraph ends a fence).
  const source = fence.opening + text.slice(fence.lastLineStart);
  const grown = lastFenceToken((fence.nested ? nestedFenceLines : markdown).parse(source, {}))?.fence;
  // Opened on the first line, so the tokens before it are its quotes, and still open on the last.
  if (!grown || grown.map![0] !== 0 || !isOpen(grown, source)) return undefined;
  const offset = fence.lastLineStart - fence.opening.length;
  const lastFence = lastFenceOf(grown, fence.nested, source, offset, fence.codeBeforeLastLine);
  // Its last line's code only grew, so what follows it is all the new text added; the drawn code takes just that.
  const added = grown.content.slice(fence.lastLineCode.length);
  grown.content = fence.codeBeforeLastLine + grown.content;
  const blocks = withLastBlock(previous.blocks, (from) => fenceBlock(grown, { from, code: added }));
  return { ...previous, text, blocks, lastFence };
}

/** Closing tokens that may follow the text's last fence while it still grows as one: its list items, lists, quotes. */
const CONTAINER_CLOSES = new Set(['list_item_close', 'bullet_list_close', 'ordered_list_close', 'blockquote_close']);

/** The fence that ends `tokens`, at the top level or as the last block of lists' last items and quotes, if one does. */
function lastFenceToken(tokens: Token[]): { fence: Token; nested: boolean } | undefined {
  let last = tokens.length - 1;
  while (last >= 0 && CONTAINER_CLOSES.has(tokens[last]!.type)) last--;
  const fence = tokens[last];
  return fence?.type === 'fence' ? { fence, nested: last < tokens.length - 1 } : undefined;
}

/** `blocks` with their last block, or the last block in their last container, made by `replace` from it. */
function withLastBlock(blocks: Block[], replace: (last: Block) => Block): Block[] {
  const last = blocks.at(-1)!;
  const { container } = last;
  const replaced = container
    ? containerBlock(container.open, container.close, withLastBlock(container.blocks, replace))
    : replace(last);
  return [...blocks.slice(0, -1), replaced];
}

/**
 * `fence`, parsed from `source` (at `offset` in the text), as the text's last fence; `codeBefore` is its code from
 * lines before `source`. Undefined while it has no line after its opening line, whose info string may still grow.
 */
function lastFenceOf(
  fence: Token,
  nested: boolean,
  source: string,
  offset: number,
  codeBefore = '',
): LastFence | undefined {
  const [first, end] = fence.map!;
  if (end - first < 2) return undefined;
  const lastLineCodeStart = endOfLines(fence.content, end - first - 2);
  // Ending in "\n": a "\r" there and a last line that starts with "\n" would be one line break, not two.
  const opening = source.slice(lineStart(source, first), lineStart(source, first + 1)).replace(/\r\n?$/, '\n');
  // Only list and quote markers and whitespace come before the fence: spaces for list markers keep every column, tabs'
  // too, and the quote markers stay, so that each line is parsed in the quotes.
  const markupStart = opening.indexOf(fence.markup);
  return {
    opening: opening.slice(0, markupStart).replace(/[^\t>]/g, ' ') + opening.slice(markupStart),
    nested,
    lastLineStart: offset + lineStart(source, end - 1),
    codeBeforeLastLine: codeBefore + fence.content.slice(0, lastLineCodeStart),
    lastLineCode: fence.content.slice(lastLineCodeStart),
  };
}

/**
 * Whether `fence` runs to the end of `source`, which it was parsed from, unclosed: its code has a line for each line
 * after its first, or for all but a last one of only quote markers and spaces (its code still to stream), where a
 * closing line would have its fence. A line after it that makes no token, such as a reference definition, ends it.
 */
function isOpen(fence: Token, source: string): boolean {
  const [first, end] = fence.map!;
  const { content } = fence;
  const lines = content === '' ? 0 : content.split('\n').length - (content.endsWith('\n') ? 1 : 0);
  const lastLineHasNoCode = /^[>\s]*$/.test(source.slice(lineStart(source, end - 1)));
  return end === lineCount(source) && (lines === end - first - 1 || (lines === end - first - 2 && lastLineHasNoCode));
}

/**
 * The lines markdown-it finds in `text`: one ended by each line break, and one more for text after the last unless
 * that is only spaces and tabs (a line's indentation still streaming), which markdown-it leaves out.
 */
function lineCount(text: string): number {
  const breaks = text.match(/\r\n?|\n/g)?.length ?? 0;
  return /[^\r\n \t][ \t]*$/.test(text) ? breaks + 1 : breaks;
}

/** Where the first `count` lines of `text` end, after their line breaks: `text` has that many. */
function endOfLines(text: string, count: number): number {
  let end = 0;
  for (let i = 0; i < count; i++) end = text.indexOf('\n', end) + 1;
  return end;
}

/** Where line `line` (from 0) starts in `text`, its lines ending as markdown-it ends them. */
function lineStart(text: string, line: number): number {
  const lineEnd = /\r\n?|\n/g;
  for (let i = 0; i < line; i++) lineEnd.exec(text);
  return lineEnd.lastIndex;
}

/** `known` with the definitions in `text` added, the first of a label winning as in markdown-it. */
function withDefinitions(known: References, text: string): References {
  // A definition is `[label]: link`: text without "]:", most of it, is not parsed again.
  if (!text.includes(']:')) return known;
  const env: Env = { references: { ...known } };
  markdown.parse(text, env);
  return env.references ?? known;
}

/** The block of `tokens` in `range` (its first token to the one after its closing token). */
function blockOf(tokens: Token[], [start, end]: [number, number], env: Env): Block {
  const first = tokens[start]!;
  if (CONTAINERS.has(first.type)) {
    const blocks = blockRanges(tokens, start + 1, end - 1).map((range) => blockOf(tokens, range, env));
    // Rendered among all the tokens, as a whole render has them: a tight list's <li> has no line break after it.
    const tag = (i: number) => markdown.renderer.renderToken(tokens, i, markdown.options);
    return containerBlock(tag(start), tag(end - 1), blocks);
  }
  if (first.type === 'fence') return fenceBlock(first);
  return { html: markdown.renderer.render(tokens.slice(start, end), markdown.options, env) };
}

/** A container's block. Its HTML is made when first read: it holds the HTML of every fence inside, all code escaped. */
function containerBlock(open: string, close: string, blocks: Block[]): Block {
  let html: string | undefined;
  return {
    get html() {
      return (html ??= open + blocks.map((block) => block.html).join('') + close);
    },
    container: { open, close, blocks },
  };
}

/** A fence's block. Its HTML, all its code escaped, is made when first read: a growing fence is drawn from its code. */
function fenceBlock(token: Token, grown?: Fence['grown']): Block {
  let html: string | undefined;
  return {
    get html() {
      return (html ??= markdown.renderer.render([token], markdown.options, {}));
    },
    fence: { info: token.info, code: token.content, grown },
  };
}

/** The range of each block from `start` to `end`, blocks at the same depth. */
function blockRanges(tokens: Token[], start: number, end: number): [number, number][] {
  const ranges: [number, number][] = [];
  for (let i = start; i < end;) {
    const after = blockEnd(tokens, i);
    ranges.push([i, after]);
    i = after;
  }
  return ranges;
}

/** The index after the block that starts at `start`: after its closing token, or after itself when it has none. */
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
