import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { Window } from 'happy-dom';
import MarkdownIt from 'markdown-it';
import { Conversation } from '../../src/extension/conversation';
import { STOPPING_AFTER_LOAD } from '../../src/extension/replies';
import { stoppingLabel } from '../../src/common/prefillProgress';
import { webviewHtml } from '../../src/extension/webviewHtml';
import {
  type AnswerStatsView,
  type HostMessage,
  MAX_IMAGE_BYTES,
  MAX_QUESTION_CHARS,
  type Reply,
  type SpeedupView,
  type Turn,
  type WebviewMessage,
  parseWebviewMessage,
} from '../../src/protocol/webview';
import { MAX_IMAGES_PER_QUESTION } from '../../src/common/imageFile';
import { ChatPage, PageState, startChat } from '../../webview/chat';
import { ImageReader, MAX_IMAGE_PIXELS, droppedUris, readImageFile, sentSize } from '../../webview/composer';
import { renderMarkdown } from '../../webview/markdown';
import { reductionSummary } from '../../webview/overlay';
import { statsDetails } from '../../webview/stats';

const PNG_DATA_URL = 'data:image/png;base64,iVBORw0KGgo=';

const STATS: AnswerStatsView = {
  visualTokens: [{ original: 576, atDecoder: 64 }],
  visionMs: 40.4,
  prefillMs: 82.6,
  ttftMs: 150.2,
  generatedTokens: 12,
  decodeTokensPerSecond: 30.25,
  provider: 'cpu',
};

const REDUCED: AnswerStatsView = {
  ...STATS,
  reduction: {
    method: 'ficoco-v',
    budget: '64',
    rule: 'model',
    why: 'measured for this model by ficoco tune: 97 % of full-token accuracy',
  },
  flopsRatio: 0.224,
  imageReductions: [{ rows: 2, cols: 2, patches: 'kmmd' }],
};

const TIMED = 'prefill (vision + language model) on cpu';
const FASTER: SpeedupView = {
  ratio: 1.83,
  low: 1.62,
  high: 2.01,
  pairs: 5,
  verdict: 'faster',
  label: '1.8× faster',
  timed: TIMED,
};
const SAME: SpeedupView = {
  ratio: 1.02,
  low: 0.95,
  high: 1.08,
  pairs: 5,
  verdict: 'same',
  label: '≈1× — no faster than full tokens on this model',
  timed: TIMED,
};
const SLOWER: SpeedupView = {
  ratio: 0.7,
  low: 0.66,
  high: 0.74,
  pairs: 5,
  verdict: 'slower',
  label: '0.7× — slower than full tokens on this model',
  timed: TIMED,
};

function reply(overrides: Partial<Reply> = {}): Reply {
  return { text: '', status: 'waiting', ...overrides };
}

function turn(overrides: Partial<Turn> = {}): Turn {
  return {
    id: 'turn-1',
    question: 'What does the dialog say?',
    images: [{ name: 'shot.png', src: PNG_DATA_URL }],
    answer: reply(),
    ...overrides,
  };
}

/** The real page the extension builds, in happy-dom, with the chat started on it and what it posts recorded. */
let window: Window;
let document: Document;
let posted: WebviewMessage[];
let chat: ChatPage;

/**
 * Builds the page in a fresh happy-dom window and starts the chat on it, reading images with `readImage`; `host` sees
 * what the page posts.
 */
function openChat(readImage?: ImageReader, host?: (message: WebviewMessage) => void, state?: PageState): void {
  window = new Window({
    settings: { disableJavaScriptFileLoading: true, disableCSSFileLoading: true, disableJavaScriptEvaluation: true },
  });
  document = window.document as unknown as Document;
  document.write(
    webviewHtml({
      cspSource: 'https://webview.test',
      scriptUri: 'https://webview.test/webview.js',
      styleUri: 'https://webview.test/webview.css',
      title: 'FiCoCo',
    }),
  );
  posted = [];
  chat = startChat(
    document,
    (message) => {
      posted.push(message);
      host?.(message);
    },
    readImage,
    state,
  );
}

beforeEach(() => openChat());

/**
 * Opens the page over the extension's side as ChatController runs it (a real Conversation taking images in and
 * holding a question back), answering each message after the post returns, as postMessage does.
 */
async function openChatWithExtension(readImage: ImageReader = readImageFile): Promise<Conversation> {
  const conversation = new Conversation();
  await window.happyDOM.close();
  openChat(readImage, (message) =>
    queueMicrotask(() => {
      if (message.type === 'addImages')
        for (const answer of conversation.addImages(message.images, message.refused)) send(answer);
      if (message.type !== 'ask') return;
      const asked = conversation.ask(message.question);
      for (const answer of 'held' in asked ? [asked.held] : asked.messages) send(answer);
    }),
  );
  return conversation;
}

/** Each question the conversation was asked, with its images' names. */
function askedAbout(conversation: Conversation): [string, string[]][] {
  const state = conversation.state();
  assert.ok(state.type === 'state');
  return state.turns.map((asked) => [asked.question, asked.images.map((image) => image.name)]);
}

afterEach(async () => {
  await window.happyDOM.close();
});

function send(message: HostMessage): void {
  chat.receive(structuredClone(message));
}

function turnElements(): HTMLElement[] {
  return [...document.querySelectorAll<HTMLElement>('#transcript .turn')];
}

function only<T>(items: T[]): T {
  assert.equal(items.length, 1);
  return items[0]!;
}

/** The one turn on the page, with its reduction overlay opened (it is drawn when first opened). */
function openedTurn(): HTMLElement {
  const element = only(turnElements());
  element.querySelector<HTMLElement>('.show-reduction')!.click();
  return element;
}

function answerOf(element: HTMLElement): HTMLElement {
  return element.querySelector<HTMLElement>('.reply[data-reply="answer"]')!;
}

function key(target: EventTarget, keyName: string, init: { shiftKey?: boolean; isComposing?: boolean } = {}): void {
  target.dispatchEvent(
    new window.KeyboardEvent('keydown', { key: keyName, bubbles: true, cancelable: true, ...init }) as unknown as Event,
  );
}

/** A Space keydown as the collapsible's header sends it: from inside the component, retargeted to the host. */
function pressSpace(target: HTMLElement): void {
  key(target, ' ');
}

/** The turn with its answer done, with these stats. */
function finished(stats: AnswerStatsView, stopReason: Reply['stopReason'] = 'stop-token'): Turn {
  return turn({ answer: reply({ text: 'Saved.', status: 'done', stopReason, stats }) });
}

/** The compact stats line under the only turn's answer. */
function statsLine(): string | null | undefined {
  return answerOf(only(turnElements())).querySelector('.stats-line')?.textContent;
}

/** Lets the async handlers (file reads) finish. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

/** Lets the page draw what streamed in: it draws once an animation frame. */
function nextFrame(): Promise<void> {
  return new Promise((resolve) => window.requestAnimationFrame(() => resolve()));
}

/** Pastes one file, as Ctrl+V does with an image on the clipboard. */
function paste(target: EventTarget, file: InstanceType<typeof window.File>): void {
  const data = new window.DataTransfer();
  data.items.add(file);
  target.dispatchEvent(new window.ClipboardEvent('paste', { clipboardData: data, bubbles: true }) as unknown as Event);
}

/** A whole 1 × 1 PNG, which the header check takes. */
const ONE_PIXEL_PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

/** A PNG of this size with no pixel data: enough for the header check. */
function pngHeader(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const typeAndData = Buffer.concat([Buffer.from(type), data]);
    const framed = Buffer.alloc(typeAndData.length + 8);
    framed.writeUInt32BE(data.length, 0);
    typeAndData.copy(framed, 4);
    framed.writeUInt32BE(crc32(typeAndData), framed.length - 4);
    return framed;
  };
  const size = Buffer.alloc(13);
  size.writeUInt32BE(width, 0);
  size.writeUInt32BE(height, 4);
  size.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', size),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('chat transcript', () => {
  test('says ready once it starts, so the extension sends its state', () => {
    assert.deepEqual(posted, [{ type: 'ready' }]);
  });

  test('the transcript is a polite live region', () => {
    assert.equal(document.getElementById('transcript')!.getAttribute('aria-live'), 'polite');
  });

  test('renders the state: question, thumbnail, markdown answer and stats', () => {
    send({
      type: 'state',
      turns: [
        turn({
          id: 'turn-1',
          answer: reply({ text: 'It says **Saved**.', status: 'done', stopReason: 'stop-token', stats: STATS }),
        }),
        turn({
          id: 'turn-2',
          question: 'And the title?',
          images: [{ name: 'huge.png' }],
          answer: reply({ text: 'Set', status: 'streaming' }),
        }),
      ],
      pending: [],
    });
    const [first, second] = turnElements();
    assert.ok(first && second);
    assert.equal(first.querySelector('.question-text')?.textContent, 'What does the dialog say?');
    assert.equal(first.querySelector('img.thumbnail')?.getAttribute('src'), PNG_DATA_URL);
    assert.equal(first.querySelector('img.thumbnail')?.getAttribute('alt'), 'shot.png');
    assert.equal(answerOf(first).querySelector('.reply-body strong')?.textContent, 'Saved');
    assert.equal(
      answerOf(first).querySelector('.stats-line')?.textContent,
      'full tokens · 64/576 tokens · TTFT 150 ms',
    );
    assert.equal(first.querySelector('.stop'), null);
    // No preview: the file name stands in for the thumbnail; a streaming answer can still be stopped.
    assert.equal(second.querySelector('img'), null);
    assert.equal(second.querySelector('.image-name')?.textContent, 'huge.png');
    assert.ok(second.querySelector('vscode-button.stop'));
    assert.equal(second.getAttribute('aria-busy'), 'true');
  });

  test('model output is sanitized: raw HTML stays text, script links go', async () => {
    send({ type: 'turnAdded', turn: turn() });
    send({
      type: 'replyText',
      turnId: 'turn-1',
      reply: 'answer',
      text: '<img src=x onerror=alert(1)> [click](javascript:alert(1))',
    });
    await nextFrame();
    const body = answerOf(only(turnElements())).querySelector('.reply-body')!;
    assert.equal(body.querySelector('img'), null);
    assert.match(body.textContent ?? '', /<img src=x onerror=alert\(1\)>/);
    assert.equal(body.querySelector('a[href^="javascript"]'), null);
  });

  test('a waiting note says how far the engine has read; streamed pieces append to their own reply, the first replacing the note', async () => {
    send({
      type: 'state',
      turns: [turn({ id: 'turn-1', answer: reply({ text: 'Done.', status: 'done', stopReason: 'stop-token' }) })],
      pending: [],
    });
    send({ type: 'turnAdded', turn: turn({ id: 'turn-2' }) });
    const second = answerOf(turnElements()[1]!);
    assert.equal(second.dataset.status, 'waiting');
    assert.ok(second.querySelector('.waiting'));
    send({ type: 'replyProgress', turnId: 'turn-2', reply: 'answer', label: 'Reading the image: part 3 of 10' });
    assert.equal(second.querySelector('.waiting')?.textContent, 'Reading the image: part 3 of 10…');
    for (const piece of ['The ', 'dialog ', 'says ', '"Saved".'])
      send({ type: 'replyText', turnId: 'turn-2', reply: 'answer', text: piece });
    assert.equal(second.dataset.status, 'streaming');
    assert.equal(second.querySelector('.waiting'), null);
    await nextFrame();
    assert.equal(second.querySelector('.reply-body')?.textContent?.trim(), 'The dialog says "Saved".');
    assert.equal(answerOf(turnElements()[0]!).querySelector('.reply-body')?.textContent?.trim(), 'Done.');
  });

  test('a streamed answer is drawn once a frame with its latest text, not once a piece', async (t) => {
    const render = t.mock.method(MarkdownIt.prototype, 'parse');
    send({ type: 'turnAdded', turn: turn() });
    const drawnBefore = render.mock.callCount();
    const words = Array.from({ length: 500 }, (_, i) => `word${i}`);
    for (const word of words) send({ type: 'replyText', turnId: 'turn-1', reply: 'answer', text: `${word} ` });
    await nextFrame();
    assert.equal(render.mock.callCount() - drawnBefore, 1);
    const body = answerOf(only(turnElements())).querySelector('.reply-body')!;
    assert.equal(body.textContent?.trim(), words.join(' '));
    send({ type: 'replyText', turnId: 'turn-1', reply: 'answer', text: 'end' });
    // The finished answer, drawn whole at once; the frame still due draws nothing more.
    send({ type: 'turnUpdated', turn: turn({ answer: reply({ text: 'The **end**', status: 'done' }) }) });
    assert.equal(answerOf(only(turnElements())).querySelector('.reply-body strong')?.textContent, 'end');
    const drawnAtEnd = render.mock.callCount();
    await nextFrame();
    assert.equal(render.mock.callCount(), drawnAtEnd);
  });

  test('a streamed answer redraws only the blocks that changed: earlier ones, and what is selected there, stay', async () => {
    send({ type: 'turnAdded', turn: turn() });
    const stream = async (text: string) => {
      send({ type: 'replyText', turnId: 'turn-1', reply: 'answer', text });
      await nextFrame();
    };
    await stream('The dialog says [Saved][s].\n\n```sh\nnpm test\n```\n\nThen');
    const body = answerOf(only(turnElements())).querySelector<HTMLElement>('.reply-body')!;
    const [first, code] = [body.querySelector('p')!, body.querySelector('pre')!];
    const selection = window.getSelection()!;
    const range = document.createRange();
    range.selectNodeContents(first);
    selection.addRange(range as never);
    await stream(' it closes.\n\n- one\n- two');
    assert.equal(body.querySelector('p'), first, 'the first paragraph is the same element');
    assert.equal(body.querySelector('pre'), code, 'so is the code block');
    assert.equal(selection.toString(), 'The dialog says [Saved][s].');
    // A later line that changes an earlier block redraws it: a reference definition makes its link.
    await stream('\n\n[s]: https://example.com/saved');
    assert.equal(body.querySelector('p a')?.getAttribute('href'), 'https://example.com/saved');
    assert.equal(body.querySelector('pre'), code, 'a block that did not change stays');
    // What is drawn is what drawing the whole text at once draws.
    const whole = document.createElement('div');
    renderMarkdown(
      whole,
      'The dialog says [Saved][s].\n\n```sh\nnpm test\n```\n\nThen it closes.\n\n- one\n- two\n\n[s]: https://example.com/saved',
      { copy: () => undefined, insert: () => undefined },
    );
    assert.equal(body.innerHTML, whole.innerHTML);
    body.querySelector<HTMLElement>('.copy-code')!.click();
    assert.deepEqual(posted.at(-1), { type: 'copy', text: 'npm test\n' });
  });

  test('a finished reduced answer: stats, Show reduction toggles the overlay, Compare posts compare', () => {
    send({ type: 'turnAdded', turn: turn() });
    send({ type: 'turnUpdated', turn: finished({ ...REDUCED, speedup: FASTER }) });
    const element = only(turnElements());
    assert.equal(element.querySelector('.stop'), null);
    assert.equal(element.hasAttribute('aria-busy'), false);
    assert.equal(
      element.querySelector('.stats-line')?.textContent,
      'ficoco-v 64 · 64/576 tokens · 1.8× faster · TTFT 150 ms',
    );
    const overlay = element.querySelector<HTMLElement>('.reduction-overlay')!;
    assert.equal(overlay.hidden, true);
    assert.equal(overlay.querySelector('.patch'), null, 'drawn when first opened');
    const toggle = element.querySelector<HTMLElement>('.show-reduction')!;
    assert.equal(toggle.getAttribute('aria-expanded'), 'false');
    toggle.click();
    assert.equal(overlay.hidden, false);
    assert.equal(toggle.getAttribute('aria-expanded'), 'true');
    assert.equal(toggle.textContent, 'Hide reduction');
    assert.deepEqual(
      [...overlay.querySelectorAll('.reduction-frame .patch')].map((cell) => cell.className),
      ['patch kept', 'patch merged', 'patch merged', 'patch dropped'],
    );
    assert.equal(overlay.querySelector('figcaption')?.textContent, '1 kept, 2 merged, 1 dropped of 4 patches');
    element.querySelector<HTMLElement>('.compare')!.click();
    assert.deepEqual(posted.at(-1), { type: 'compare', turnId: 'turn-1' });
  });

  test('an image the saved chat did not keep is named as such; its turn offers no Compare', () => {
    send({
      type: 'state',
      turns: [
        turn({
          images: [{ name: 'old.png', notKept: true }],
          answer: reply({ text: 'Saved', status: 'done', stopReason: 'stop-token', stats: REDUCED }),
        }),
      ],
      pending: [],
    });
    const element = only(turnElements());
    assert.equal(element.querySelector('img'), null);
    assert.equal(element.querySelector('.image-name.not-kept')?.textContent, 'old.png (image not kept)');
    assert.equal(element.querySelector('.compare'), null);
    assert.equal(element.querySelector('.show-reduction'), null, 'no picture to lay the overlay on');
  });

  test("a tiled screenshot's overlay keeps the screenshot's shape and draws where its tiles meet", () => {
    const tiled = {
      rows: 2,
      cols: 4,
      patches: 'kmdkkmdk',
      tileBorders: { rows: [1], cols: [1.5, 3] },
      thumbnail: { rows: 2, cols: 2, patches: 'kddk' },
    };
    send({ type: 'turnAdded', turn: finished({ ...REDUCED, imageReductions: [tiled] }) });
    const turn = openedTurn();
    const frame = turn.querySelector<HTMLElement>('.reduction:not(.whole-image) .reduction-frame')!;
    assert.equal(frame.style.aspectRatio, '4 / 2');
    const borders = [...frame.querySelectorAll<HTMLElement>('.tile-border')];
    assert.deepEqual(
      borders.map((line) => [line.className, line.style.top || line.style.left]),
      [
        ['tile-border across', '50.000%'],
        ['tile-border down', '37.500%'],
        ['tile-border down', '75.000%'],
      ],
    );
    // The thumbnail the model reads besides the tiles: the whole image squashed to one square tile, beside it.
    const thumbnail = turn.querySelector<HTMLElement>('.reduction-figures .reduction.whole-image')!;
    assert.equal(thumbnail.querySelector<HTMLElement>('.reduction-frame')!.style.aspectRatio, '');
    assert.deepEqual(
      [...thumbnail.querySelectorAll('.patch')].map((cell) => cell.className),
      ['patch kept', 'patch dropped', 'patch dropped', 'patch kept'],
    );
    assert.equal(
      thumbnail.querySelector('figcaption')?.textContent,
      'Whole image in one tile: 2 kept, 2 dropped of 4 patches',
    );
    assert.match(thumbnail.querySelector('img')!.alt, /squashed to one tile$/);
  });

  test("a tiled screenshot's grid fits its frame however many patches it has: tracks shrink below a cell's border", () => {
    // LLaVA-OneVision's 2304 × 2304 screenshot: 6 × 6 tiles of 27 × 27 patches, in a frame 252 px wide. A 1fr track is
    // at least its cells' borders (2 px, 4 px kept): Chromium laid the grid 324 px wide, its 27th column at 54 px where
    // the tile border was drawn at 42 px.
    const side = 162;
    const tiled = {
      rows: side,
      cols: side,
      patches: 'k'.repeat(side * side),
      tileBorders: { rows: [27, 54, 81, 108, 135], cols: [27, 54, 81, 108, 135] },
      thumbnail: { rows: 27, cols: 27, patches: 'k'.repeat(27 * 27) },
    };
    send({ type: 'turnAdded', turn: finished({ ...REDUCED, imageReductions: [tiled] }) });
    const grids = [...openedTurn().querySelectorAll<HTMLElement>('.reduction-grid')];
    assert.deepEqual(
      grids.map((grid) => [grid.style.gridTemplateColumns, grid.style.gridTemplateRows]),
      [
        [`repeat(${side}, minmax(0, 1fr))`, `repeat(${side}, minmax(0, 1fr))`],
        ['repeat(27, minmax(0, 1fr))', 'repeat(27, minmax(0, 1fr))'],
      ],
    );
  });

  test('a tile border is centred on the line between two patches, not drawn over the next tile', () => {
    const style = document.createElement('style');
    style.textContent = readFileSync('webview/style.css', 'utf8');
    document.head.append(style);
    const tiled = { rows: 2, cols: 2, patches: 'kkkk', tileBorders: { rows: [1], cols: [1] } };
    send({ type: 'turnAdded', turn: finished({ ...REDUCED, imageReductions: [tiled] }) });
    const [across, down] = [...openedTurn().querySelectorAll<HTMLElement>('.tile-border')];
    // 2 px wide, at the border's place: 1 px each side of it.
    const computed = (line: HTMLElement) => window.getComputedStyle(line as never);
    assert.equal(computed(across!).borderTopWidth, '2px');
    assert.equal(computed(across!).marginTop, '-1px');
    assert.equal(computed(down!).borderLeftWidth, '2px');
    assert.equal(computed(down!).marginLeft, '-1px');
  });

  test('an image the model saw part of is laid under the grid as it saw it: the middle of a crop, a padded square', () => {
    const cropped = { rows: 2, cols: 2, patches: 'kmmd', seen: { left: 0.25, top: 0, width: 0.5, height: 1 } };
    const padded = { rows: 2, cols: 2, patches: 'kkdd', seen: { left: 0, top: -0.5, width: 1, height: 2 } };
    const stats = { ...REDUCED, imageReductions: [cropped, padded] };
    const images = [
      { name: 'wide.png', src: PNG_DATA_URL },
      { name: 'also-wide.png', src: PNG_DATA_URL },
    ];
    send({ type: 'turnAdded', turn: turn({ images, answer: reply({ text: 'Saved.', status: 'done', stats }) }) });
    const frames = [...openedTurn().querySelectorAll<HTMLElement>('.reduction-frame')];
    assert.equal(frames.length, 2);
    const placement = (frame: HTMLElement) => {
      const { left, top, width, height } = frame.querySelector('img')!.style;
      return { part: frame.classList.contains('part-seen'), left, top, width, height };
    };
    // The picture is twice the frame's width, its left half-width (a quarter of it) out of view.
    assert.deepEqual(placement(frames[0]!), {
      part: true,
      left: '-50.000%',
      top: '0.000%',
      width: '200.000%',
      height: '100.000%',
    });
    // The picture fills half the frame's height, a quarter of it padding above.
    assert.deepEqual(placement(frames[1]!), {
      part: true,
      left: '0.000%',
      top: '25.000%',
      width: '100.000%',
      height: '50.000%',
    });
    assert.equal(frames[0]!.style.aspectRatio, '2 / 2');
  });

  test("a centre-cropped picture is not held to the frame's width by VS Code's default styles", () => {
    // VS Code prepends `img { max-width: 100%; max-height: 100% }` to every webview (workbench/contrib/webview/
    // browser/pre/index.html): laid at 200% of the frame, the picture would be squashed to 100% and shifted off.
    for (const css of ['img { max-width: 100%; max-height: 100%; }', readFileSync('webview/style.css', 'utf8')]) {
      const style = document.createElement('style');
      style.textContent = css;
      document.head.append(style);
    }
    const cropped = { rows: 2, cols: 2, patches: 'kmmd', seen: { left: 0.25, top: 0, width: 0.5, height: 1 } };
    const stats = { ...REDUCED, imageReductions: [cropped] };
    const images = [{ name: 'wide.png', src: PNG_DATA_URL }];
    send({ type: 'turnAdded', turn: turn({ images, answer: reply({ text: 'Saved.', status: 'done', stats }) }) });
    const picture = openedTurn().querySelector<HTMLElement>('.reduction-frame img')!;
    assert.equal(picture.style.width, '200.000%');
    const computed = window.getComputedStyle(picture as never);
    assert.equal(computed.maxWidth, 'none');
    assert.equal(computed.maxHeight, 'none');
  });

  test('the overlay has a legend: what each drawing means, with a swatch drawn as the patches are', () => {
    send({ type: 'turnAdded', turn: finished(REDUCED) });
    const legend = openedTurn().querySelector<HTMLElement>('.reduction-overlay .reduction-legend')!;
    assert.equal(legend.getAttribute('aria-label'), 'What the drawing shows');
    const items = [...legend.querySelectorAll('li')];
    assert.deepEqual(
      items.map((item) => item.textContent),
      ['kept as its own token', 'merged into another token', 'dropped'],
    );
    // The swatch is a patch with the figures' own classes, hidden from screen readers, which read the words.
    assert.deepEqual(
      items.map((item) => item.querySelector('.legend-swatch .patch')?.className),
      ['patch kept', 'patch merged', 'patch dropped'],
    );
    assert.ok(items.every((item) => item.querySelector('.legend-swatch')?.getAttribute('aria-hidden') === 'true'));
  });

  test('a code block that streams keeps its elements: its code grows in place, and Copy takes all of it', async () => {
    send({ type: 'turnAdded', turn: turn() });
    const stream = async (text: string) => {
      send({ type: 'replyText', turnId: 'turn-1', reply: 'answer', text });
      await nextFrame();
    };
    const pieces = ['Run:\n\n```sh\nnpm ', 'ci', '\nnpm ', 'test -- <b>', '\n\n', 'echo ok\n'];
    await stream(pieces[0]!);
    const body = answerOf(only(turnElements())).querySelector<HTMLElement>('.reply-body')!;
    const [code, copy] = [body.querySelector('pre code')!, body.querySelector<HTMLElement>('.copy-code')!];
    for (const piece of pieces.slice(1)) await stream(piece);
    assert.ok(body.querySelector('pre code') === code, 'the code element is the same');
    assert.ok(body.querySelector('.copy-code') === copy, 'so is its Copy button');
    const whole = document.createElement('div');
    renderMarkdown(whole, pieces.join(''), { copy: () => undefined, insert: () => undefined });
    assert.equal(body.innerHTML, whole.innerHTML);
    copy.click();
    assert.deepEqual(posted.at(-1), { type: 'copy', text: 'npm ci\nnpm test -- <b>\n\necho ok\n' });
    // The fence closes and a paragraph follows: the code block still stays.
    await stream('```\n\nDone.');
    assert.ok(body.querySelector('pre code') === code, 'a closed fence keeps its element');
    assert.equal(body.querySelector('p:last-child')?.textContent, 'Done.');
  });

  test('what the reader opened and focused stays so when the turn is redrawn', async () => {
    send({ type: 'turnAdded', turn: finished(REDUCED) });
    const before = only(turnElements());
    before.querySelector<HTMLElement>('.show-reduction')!.click();
    pressSpace(before.querySelector<HTMLElement>('.stats-details')!);
    await settle();
    const compare = before.querySelector<HTMLElement>('.compare')!;
    compare.tabIndex = 0; // vscode-button's own tabindex, which happy-dom does not run
    compare.focus();
    // The speedup arrives: the turn is drawn again.
    send({ type: 'turnUpdated', turn: finished({ ...REDUCED, speedup: FASTER }) });
    const after = only(turnElements());
    assert.notEqual(after, before);
    assert.equal(after.querySelector<HTMLElement>('.reduction-overlay')!.hidden, false);
    assert.equal(after.querySelector('.show-reduction')?.textContent, 'Hide reduction');
    assert.ok(after.querySelector('.stats-details')!.hasAttribute('open'));
    assert.equal(document.activeElement, after.querySelector('.compare'));
  });

  test('an unreduced answer offers neither overlay nor comparison', () => {
    send({
      type: 'turnAdded',
      turn: turn({ answer: reply({ text: 'x', status: 'done', stopReason: 'stop-token', stats: STATS }) }),
    });
    const element = only(turnElements());
    assert.equal(element.querySelector('.show-reduction'), null);
    assert.equal(element.querySelector('.compare'), null);
  });

  test('a comparison shows both answers side by side, titled, streaming into the full one', async () => {
    const done = reply({ text: 'blue', status: 'done', stopReason: 'stop-token', stats: REDUCED });
    send({ type: 'turnAdded', turn: turn({ answer: done, full: reply() }) });
    send({ type: 'replyText', turnId: 'turn-1', reply: 'full', text: 'green' });
    await nextFrame();
    const element = only(turnElements());
    assert.ok(element.querySelector('.replies.compared'));
    assert.deepEqual(
      [...element.querySelectorAll('.reply h3')].map((h) => h.textContent),
      ['Answer (ficoco-v, 64)', 'Full tokens'],
    );
    assert.equal(element.querySelector('.reply[data-reply="full"] .reply-body')?.textContent?.trim(), 'green');
    assert.equal(element.querySelector('.compare'), null);
  });

  test('code blocks get Copy and Insert at Cursor', () => {
    send({
      type: 'turnAdded',
      turn: turn({ answer: reply({ text: 'Run:\n\n```sh\nnpm test\n```', status: 'done', stopReason: 'stop-token' }) }),
    });
    const buttons = [...only(turnElements()).querySelectorAll<HTMLElement>('.code-actions vscode-button')];
    assert.deepEqual(
      buttons.map((b) => b.textContent),
      ['Copy', 'Insert at Cursor'],
    );
    buttons[0]!.click();
    buttons[1]!.click();
    assert.deepEqual(posted.slice(-2), [
      { type: 'copy', text: 'npm test\n' },
      { type: 'insert', text: 'npm test\n' },
    ]);
  });

  test('stopped, token-limited and failed answers say so', () => {
    send({
      type: 'state',
      turns: [
        turn({ id: 'turn-1', answer: reply({ status: 'done', stopReason: 'cancelled' }) }),
        turn({ id: 'turn-2', answer: reply({ text: 'long', status: 'done', stopReason: 'max-tokens', stats: STATS }) }),
        turn({
          id: 'turn-3',
          answer: reply({ text: 'The dia', status: 'error', error: 'The FiCoCo engine process stopped unexpectedly.' }),
        }),
      ],
      pending: [],
    });
    const [first, second, third] = turnElements();
    assert.equal(first?.querySelector('.note')?.textContent, 'Stopped.');
    assert.equal(first?.querySelector('.stats'), null);
    assert.match(second?.querySelector('.note')?.textContent ?? '', /token limit/);
    assert.equal(third?.querySelector('.error')?.textContent, 'The FiCoCo engine process stopped unexpectedly.');
    assert.equal(third?.querySelector('.reply-body')?.textContent?.trim(), 'The dia');
  });

  test('Stop posts a stop for its turn, once', () => {
    send({
      type: 'state',
      turns: [
        turn({ id: 'turn-1', answer: reply({ status: 'streaming' }) }),
        turn({ id: 'turn-2', answer: reply({ status: 'streaming' }) }),
      ],
      pending: [],
    });
    const stop = turnElements()[0]!.querySelector<HTMLElement>('.stop')!;
    stop.click();
    stop.click();
    assert.deepEqual(posted, [{ type: 'ready' }, { type: 'stop', turnId: 'turn-1' }]);
    assert.ok(stop.hasAttribute('disabled'));
  });

  test('a turn redrawn while its stop is under way keeps Stop disabled, and what the stop waits for, until it ends', () => {
    const answered = reply({ text: 'blue', status: 'done', stopReason: 'stop-token' });
    // Compare asked while the answer's speedup is measured: the full-token reply waits for the measurement to end.
    const measuring = turn({ answer: { ...answered, stats: { ...REDUCED, measuringSpeedup: true } }, full: reply() });
    send({ type: 'turnAdded', turn: measuring });
    only(turnElements()).querySelector<HTMLElement>('.stop')!.click();
    // The extension says that the reply is stopping, then what the stop waits for.
    const waitsFor = stoppingLabel(12_000);
    send({ type: 'turnUpdated', turn: { ...measuring, full: reply({ stopping: true }) } });
    send({ type: 'replyProgress', turnId: 'turn-1', reply: 'full', label: waitsFor });
    // The measurement Compare cancelled ends while the full-token reply is stopping: the turn is drawn again.
    const stopping = reply({ stopping: true, progress: waitsFor });
    send({ type: 'turnUpdated', turn: turn({ answer: { ...answered, stats: REDUCED }, full: stopping }) });
    const full = only(turnElements()).querySelector<HTMLElement>('.reply[data-reply="full"]')!;
    const stop = full.querySelector<HTMLElement>('.stop')!;
    assert.ok(stop.hasAttribute('disabled'));
    assert.equal(stop.textContent, 'Stopping…');
    assert.equal(full.querySelector('.waiting')?.textContent, `${waitsFor}…`);
    stop.click();
    key(document, 'Escape');
    assert.deepEqual(posted, [{ type: 'ready' }, { type: 'stop', turnId: 'turn-1' }]);
    const stopped = reply({ status: 'done', stopReason: 'cancelled' });
    send({ type: 'turnUpdated', turn: turn({ answer: { ...answered, stats: REDUCED }, full: stopped }) });
    assert.equal(only(turnElements()).querySelector('.stop'), null);
  });

  test('a page loaded while a stop is under way (shown again, another chat tab) draws it, and the progress', () => {
    send({
      type: 'state',
      turns: [
        turn({ id: 'turn-1', answer: reply({ progress: 'Reading the prompt: 40 %' }) }),
        turn({ id: 'turn-2', answer: reply({ stopping: true, progress: STOPPING_AFTER_LOAD }) }),
      ],
      pending: [],
    });
    const [reading, stopping] = turnElements().map(answerOf);
    const stop = stopping!.querySelector<HTMLElement>('.stop')!;
    assert.ok(stop.hasAttribute('disabled'));
    assert.equal(stop.textContent, 'Stopping…');
    assert.equal(stopping?.querySelector('.waiting')?.textContent, `${STOPPING_AFTER_LOAD}…`);
    assert.equal(reading?.querySelector('.stop')?.hasAttribute('disabled'), false);
    assert.equal(reading?.querySelector('.waiting')?.textContent, 'Reading the prompt: 40 %…');
    // Escape goes to the newest answer running, whose stop is under way already.
    stop.click();
    key(document, 'Escape');
    assert.deepEqual(posted, [{ type: 'ready' }]);
  });

  test('Escape stops the newest running answer', () => {
    send({
      type: 'state',
      turns: [
        turn({ id: 'turn-1', answer: reply({ status: 'streaming' }) }),
        turn({ id: 'turn-2' }),
        turn({ id: 'turn-3', answer: reply({ text: 'x', status: 'done', stopReason: 'stop-token' }) }),
      ],
      pending: [],
    });
    key(document, 'Escape', { isComposing: true });
    assert.deepEqual(posted, [{ type: 'ready' }], 'an Escape that ends an IME composition stops nothing');
    key(document, 'Escape');
    assert.deepEqual(posted.at(-1), { type: 'stop', turnId: 'turn-2' });
  });

  test('malformed messages and messages for unknown turns change nothing', () => {
    const errors: unknown[] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => errors.push(args);
    try {
      chat.receive({ type: 'replyText', turnId: 'turn-1' });
      chat.receive('hello');
    } finally {
      console.error = consoleError;
    }
    assert.equal(errors.length, 2);
    send({ type: 'turnAdded', turn: turn() });
    send({ type: 'replyText', turnId: 'turn-9', reply: 'answer', text: 'lost' });
    assert.equal(only(turnElements()).textContent?.includes('lost'), false);
  });
});

describe('chat composer', () => {
  test('Enter sends the question and clears the box; Shift+Enter does not send', () => {
    const question = document.getElementById('question') as HTMLTextAreaElement;
    question.value = 'what colour is box A ?';
    key(question, 'Enter', { shiftKey: true });
    assert.deepEqual(posted, [{ type: 'ready' }]);
    key(question, 'Enter');
    assert.deepEqual(posted.at(-1), { type: 'ask', question: 'what colour is box A ?' });
    assert.equal(question.value, '');
  });

  test('an empty question is not sent; the notice says why', () => {
    document.getElementById('send')!.click();
    assert.deepEqual(posted, [{ type: 'ready' }]);
    const notice = document.getElementById('notice')!;
    assert.equal(notice.hidden, false);
    assert.match(notice.textContent ?? '', /Type a question/);
  });

  test('Attach and New Chat ask the extension; New Chat clears the notice of the chat it leaves', () => {
    send({ type: 'notice', message: 'strip.png is 3300 × 100 pixels …' });
    document.getElementById('attach')!.click();
    assert.equal(document.getElementById('notice')!.hidden, false);
    document.getElementById('new-chat')!.click();
    assert.deepEqual(posted.slice(1), [{ type: 'attach' }, { type: 'newChat' }]);
    assert.equal(document.getElementById('notice')!.hidden, true);
  });

  test('after New Chat and after Send the keyboard is in the question box', () => {
    const question = document.getElementById('question') as HTMLTextAreaElement;
    const newChat = document.getElementById('new-chat')!;
    newChat.click();
    assert.equal(document.activeElement, question);
    question.blur();
    question.value = 'what does the dialog say?';
    document.getElementById('send')!.click();
    assert.deepEqual(posted.at(-1), { type: 'ask', question: 'what does the dialog say?' });
    assert.equal(document.activeElement, question);
  });

  test('the button row under the question: Attach Image…, New Chat and Send, each a vscode-button with a tooltip', () => {
    const row = document.querySelector('.composer-actions')!;
    assert.deepEqual(
      [...row.children].map((child) => [
        child.localName,
        child.id,
        child.textContent,
        Boolean(child.getAttribute('title')),
      ]),
      [
        ['vscode-button', 'attach', 'Attach Image…', true],
        ['vscode-button', 'new-chat', 'New Chat', true],
        ['vscode-button', 'send', 'Send', true],
      ],
    );
  });

  test('waiting images show as removable thumbnails; the button and Delete remove them', () => {
    send({
      type: 'pending',
      pending: [
        { id: 'image-1', name: 'a.png', src: PNG_DATA_URL },
        { id: 'image-2', name: 'b.gif' },
      ],
    });
    const items = [...document.querySelectorAll<HTMLElement>('#pending .pending-image')];
    assert.equal(items.length, 2);
    assert.equal(document.getElementById('pending')!.hidden, false);
    assert.equal(items[0]!.querySelector('img')?.getAttribute('alt'), 'a.png');
    // A list of images, each with a Remove button that names the image it removes.
    assert.equal(document.getElementById('pending')!.getAttribute('role'), 'list');
    assert.ok(items.every((item) => item.getAttribute('role') === 'listitem'));
    assert.deepEqual(
      items.map((item) => item.querySelector('vscode-button.remove-image')?.getAttribute('aria-label')),
      ['Remove a.png', 'Remove b.gif'],
    );
    items[0]!.querySelector<HTMLElement>('.remove-image')!.click();
    key(items[1]!, 'Delete');
    assert.deepEqual(posted.slice(1), [
      { type: 'removeImage', id: 'image-1' },
      { type: 'removeImage', id: 'image-2' },
    ]);
    send({ type: 'pending', pending: [] });
    assert.equal(document.getElementById('pending')!.hidden, true);
  });

  test('a question longer than the extension reads stays in the box, with why', () => {
    const question = document.getElementById('question') as HTMLTextAreaElement;
    const long = 'x'.repeat(MAX_QUESTION_CHARS + 1);
    question.value = long;
    key(question, 'Enter');
    assert.deepEqual(posted, [{ type: 'ready' }], 'not sent: the extension would drop it');
    assert.equal(question.value, long);
    assert.match(document.getElementById('notice')!.textContent ?? '', /at most 100000 characters/);
    for (const message of posted) parseWebviewMessage(message);
  });

  test('a paste of more files than a question takes sends the first ones and one reason for the rest', async () => {
    const question = document.getElementById('question') as HTMLTextAreaElement;
    const data = new window.DataTransfer();
    for (let i = 0; i < MAX_IMAGES_PER_QUESTION + 4; i++)
      data.items.add(new window.File([new Uint8Array([0x89, 0x50, 0x4e, 0x47])], `s${i}.png`, { type: 'image/png' }));
    question.dispatchEvent(
      new window.ClipboardEvent('paste', { clipboardData: data, bubbles: true }) as unknown as Event,
    );
    await settle();
    const sent = posted.at(-1);
    assert.ok(sent?.type === 'addImages');
    assert.deepEqual(
      sent.images.map((image) => image.name),
      Array.from({ length: MAX_IMAGES_PER_QUESTION }, (_, i) => `s${i}.png`),
    );
    assert.equal(sent.refused.length, 1);
    assert.match(sent.refused[0]!, /4 more files were not added: a question can carry 8 images/);
    // What the page sent, the extension reads.
    assert.deepEqual(parseWebviewMessage(structuredClone(sent)), sent);
  });

  test('a pasted image is read and sent to the extension', async () => {
    const data = new window.DataTransfer();
    data.items.add(new window.File([new Uint8Array([0x89, 0x50, 0x4e, 0x47])], 'clip.png', { type: 'image/png' }));
    document
      .getElementById('question')!
      .dispatchEvent(new window.ClipboardEvent('paste', { clipboardData: data, bubbles: true }) as unknown as Event);
    await settle();
    assert.deepEqual(posted.at(-1), {
      type: 'addImages',
      images: [{ name: 'clip.png', dataBase64: 'iVBORw==' }],
      refused: [],
    });
  });

  test('a question sent while a pasted image is still being read goes after that image', async () => {
    let finishRead: () => void = () => undefined;
    await window.happyDOM.close();
    openChat(
      (file) =>
        new Promise((resolve) => {
          finishRead = () => resolve({ name: file.name, dataBase64: 'iVBORw==' });
        }),
    );
    const question = document.getElementById('question') as HTMLTextAreaElement;
    paste(question, new window.File([new Uint8Array([0x89])], 'big.png', { type: 'image/png' }));
    question.value = 'what does the dialog say ?';
    key(question, 'Enter');
    await settle();
    assert.equal(question.value, '', 'the box is cleared at once');
    assert.deepEqual(posted, [{ type: 'ready' }], 'nothing is asked before the image is read');
    finishRead();
    await settle();
    assert.deepEqual(posted.slice(1), [
      { type: 'addImages', images: [{ name: 'big.png', dataBase64: 'iVBORw==' }], refused: [] },
      { type: 'ask', question: 'what does the dialog say ?' },
    ]);
  });

  test('an image the page cannot read holds the question back once, with the reason', async () => {
    const conversation = await openChatWithExtension(() =>
      Promise.reject(new Error('IMG_0001.heic is not an image FiCoCo can read: use PNG, JPEG, WebP or GIF.')),
    );
    conversation.addImages([{ name: 'dialog.png', dataBase64: ONE_PIXEL_PNG.toString('base64') }]);
    conversation.startTurn('first?');
    const question = document.getElementById('question') as HTMLTextAreaElement;
    paste(question, new window.File([new Uint8Array([0])], 'IMG_0001.heic', { type: 'image/heic' }));
    question.value = 'what does this new dialog say?';
    key(question, 'Enter');
    await settle();
    assert.deepEqual(askedAbout(conversation), [['first?', ['dialog.png']]], 'not asked about the previous screenshot');
    assert.equal(question.value, 'what does this new dialog say?');
    const notice = document.getElementById('notice')!;
    assert.equal(notice.hidden, false);
    assert.match(notice.textContent ?? '', /^IMG_0001\.heic is not an image .* The question was not sent/);
    // Told, the user may ask again: a follow-up about the images already in the chat.
    key(question, 'Enter');
    await settle();
    assert.deepEqual(askedAbout(conversation).at(-1), ['what does this new dialog say?', ['dialog.png']]);
    assert.equal(notice.hidden, true);
  });

  test('an image taken after a refused one lets the question go with it', async () => {
    const conversation = await openChatWithExtension((file) =>
      file.name.endsWith('.heic')
        ? Promise.reject(new Error(`${file.name} is not an image FiCoCo can read: use PNG, JPEG, WebP or GIF.`))
        : Promise.resolve({ name: file.name, dataBase64: ONE_PIXEL_PNG.toString('base64') }),
    );
    const question = document.getElementById('question') as HTMLTextAreaElement;
    paste(question, new window.File([new Uint8Array([0])], 'IMG_0001.heic', { type: 'image/heic' }));
    await settle();
    paste(question, new window.File([ONE_PIXEL_PNG], 'shot.png', { type: 'image/png' }));
    question.value = 'what does the dialog say ?';
    key(question, 'Enter');
    await settle();
    assert.deepEqual(askedAbout(conversation), [['what does the dialog say ?', ['shot.png']]]);
  });

  test('an image the extension refuses is not swapped for the previous screenshot, and its notice stays', async () => {
    const conversation = await openChatWithExtension();
    const question = document.getElementById('question') as HTMLTextAreaElement;
    /** Pastes the image and presses Enter at once, as the user does; returns what the conversation was asked. */
    const ask = async (bytes: Buffer, name: string, text: string) => {
      paste(question, new window.File([bytes], name, { type: 'image/png' }));
      question.value = text;
      key(question, 'Enter');
      await settle();
      return askedAbout(conversation);
    };
    assert.deepEqual(await ask(ONE_PIXEL_PNG, 'dialog.png', 'first?'), [['first?', ['dialog.png']]]);
    assert.deepEqual(
      await ask(pngHeader(3300, 100), 'strip.png', 'second?'),
      [['first?', ['dialog.png']]],
      'the second question is not asked about dialog.png',
    );
    assert.equal(question.value, 'second?');
    const notice = document.getElementById('notice')!;
    assert.match(notice.textContent ?? '', /^strip\.png is 3300 × 100 pixels, an aspect ratio of 33:1; .* not sent/);
    assert.equal(notice.hidden, false);
  });

  test('a question asked before any image comes back to the box, with what to do', async () => {
    const conversation = await openChatWithExtension();
    const question = document.getElementById('question') as HTMLTextAreaElement;
    question.value = 'what does the dialog say?';
    key(question, 'Enter');
    await settle();
    assert.deepEqual(askedAbout(conversation), []);
    assert.equal(question.value, 'what does the dialog say?');
    assert.equal(
      document.getElementById('notice')!.textContent,
      'Paste, drop or attach an image first, then ask about it.',
    );
  });

  test('a question handed back joins what was typed since, and the box takes focus', () => {
    const question = document.getElementById('question') as HTMLTextAreaElement;
    question.value = 'and the colour?';
    send({ type: 'questionHeld', question: 'what does it say?', message: 'a.heic is not an image … not sent.' });
    assert.equal(question.value, 'what does it say?\nand the colour?');
    assert.equal(document.activeElement, question);
    assert.equal(document.getElementById('notice')!.textContent, 'a.heic is not an image … not sent.');
  });

  test('the question being typed is still there when the page is shown again; a sent one is not', async () => {
    // VS Code tears a hidden page down and keeps only what it saved with setState.
    let saved: unknown;
    const state: PageState = { getState: () => saved, setState: (value) => void (saved = value) };
    const reopen = async () => {
      await window.happyDOM.close();
      openChat(undefined, undefined, state);
      return document.getElementById('question') as HTMLTextAreaElement;
    };
    let question = await reopen();
    question.value = 'which box does the arrow';
    question.dispatchEvent(new window.Event('input', { bubbles: true }) as unknown as Event);
    question = await reopen();
    assert.equal(question.value, 'which box does the arrow');
    question.value += ' point to?';
    question.dispatchEvent(new window.Event('input', { bubbles: true }) as unknown as Event);
    key(question, 'Enter');
    assert.deepEqual(posted.at(-1), { type: 'ask', question: 'which box does the arrow point to?' });
    question = await reopen();
    assert.equal(question.value, '');
  });

  test('Explorer items dropped with Shift arrive as URIs', () => {
    const data = new window.DataTransfer();
    data.setData('resourceurls', JSON.stringify(['file:///home/me/a.png', 'vscode-remote://ssh/home/me/b.png']));
    const drop = new window.Event('drop', { bubbles: true, cancelable: true });
    Object.defineProperty(drop, 'dataTransfer', { value: data });
    document.body.dispatchEvent(drop as unknown as Event);
    assert.deepEqual(posted.at(-1), {
      type: 'addUris',
      uris: ['file:///home/me/a.png', 'vscode-remote://ssh/home/me/b.png'],
    });
  });

  test('a notice from the extension shows until the user asks again, whatever the transcript receives', () => {
    const notice = document.getElementById('notice')!;
    send({ type: 'notice', message: 'strip.png is 3300 × 100 pixels …' });
    assert.equal(notice.textContent, 'strip.png is 3300 × 100 pixels …');
    send({ type: 'turnAdded', turn: turn() });
    assert.equal(notice.hidden, false);
    const question = document.getElementById('question') as HTMLTextAreaElement;
    question.value = 'and the title?';
    key(question, 'Enter');
    assert.equal(notice.hidden, true);
  });

  test("a page that loads shows the state's notice, and a state without one clears the last", () => {
    const notice = document.getElementById('notice')!;
    send({ type: 'state', turns: [], pending: [], notice: 'notes.png is not an image …' });
    assert.equal(notice.hidden, false);
    assert.equal(notice.textContent, 'notes.png is not an image …');
    send({ type: 'state', turns: [], pending: [] });
    assert.equal(notice.hidden, true);
  });
});

describe('image intake helpers', () => {
  test('only image types are read; others get a message', async () => {
    await assert.rejects(
      readImageFile(new window.File(['hello'], 'notes.txt', { type: 'text/plain' }) as unknown as File),
      /notes\.txt is not an image FiCoCo can read/,
    );
    const jpeg = await readImageFile(
      new window.File([new Uint8Array([0xff, 0xd8])], 'photo.JPG', { type: '' }) as unknown as File,
    );
    assert.deepEqual(jpeg, { name: 'photo.JPG', dataBase64: '/9g=' });
  });

  test('an image one byte over the limit is said to be over it', async () => {
    const over = new window.File([new Uint8Array(MAX_IMAGE_BYTES + 1)], 'over.png', { type: 'image/png' });
    await assert.rejects(
      readImageFile(over as unknown as File),
      /^Error: over\.png is 32\.1 MiB; FiCoCo takes image files up to 32 MiB\.$/,
    );
  });

  test('dropped URI lists: VS Code resource list, then the plain list without comments', () => {
    const plain = new window.DataTransfer();
    plain.setData('text/uri-list', '# comment\r\nfile:///a.png\r\nfile:///b.png');
    assert.deepEqual(droppedUris(plain as unknown as DataTransfer), ['file:///a.png', 'file:///b.png']);
  });

  test('overlay summary counts patch fates', () => {
    assert.equal(reductionSummary({ rows: 1, cols: 5, patches: 'kkmdd' }), '2 kept, 1 merged, 2 dropped of 5 patches');
    assert.equal(reductionSummary({ rows: 1, cols: 2, patches: 'kk' }), '2 kept of 2 patches');
  });
});

describe('stats under an answer', () => {
  test('a faster reduced answer: method · kept tokens · the speedup as a badge · TTFT', () => {
    send({ type: 'turnAdded', turn: finished({ ...REDUCED, speedup: FASTER }) });
    assert.equal(statsLine(), 'ficoco-v 64 · 64/576 tokens · 1.8× faster · TTFT 150 ms');
    assert.equal(document.querySelector('.stats-line vscode-badge.speedup')?.textContent, '1.8× faster');
  });

  test("no faster and slower are the extension's own sentences, as text that wraps, not a badge", () => {
    for (const speedup of [SAME, SLOWER]) {
      send({ type: 'state', turns: [finished({ ...REDUCED, speedup })], pending: [] });
      assert.equal(statsLine(), `ficoco-v 64 · 64/576 tokens · ${speedup.label} · TTFT 150 ms`);
      assert.equal(document.querySelector('.stats-line vscode-badge'), null);
    }
    assert.doesNotMatch(statsLine() ?? '', /faster/);
  });

  test('while the extension measures, the line says so; a measurement that ended without a figure says nothing', () => {
    send({ type: 'turnAdded', turn: finished({ ...REDUCED, measuringSpeedup: true }) });
    assert.equal(statsLine(), 'ficoco-v 64 · 64/576 tokens · measuring speedup… · TTFT 150 ms');
    send({ type: 'turnUpdated', turn: finished({ ...REDUCED, speedup: FASTER }) });
    assert.equal(statsLine(), 'ficoco-v 64 · 64/576 tokens · 1.8× faster · TTFT 150 ms');
    send({ type: 'turnUpdated', turn: finished(REDUCED) });
    assert.equal(statsLine(), 'ficoco-v 64 · 64/576 tokens · TTFT 150 ms');
  });

  test("auto's choice of every token reads as full tokens, with the reason in the details", () => {
    const why = 'Measured for this model (ficoco tune): no method and budget kept 95 % …';
    send({
      type: 'turnAdded',
      turn: finished({ ...STATS, reduction: { method: 'none', budget: 'all', rule: 'model', why } }),
    });
    assert.equal(statsLine(), 'full tokens · 64/576 tokens · TTFT 150 ms');
    const terms = [...document.querySelectorAll('.stats-details dt')].map((dt) => dt.textContent);
    assert.ok(terms.includes('Why this reduction'));
  });

  test('an unreduced answer says full tokens; the tokens of several images add up', () => {
    const images = [
      { original: 576, atDecoder: 576 },
      { original: 576, atDecoder: 576 },
    ];
    send({ type: 'turnAdded', turn: finished({ ...STATS, visualTokens: images }) });
    assert.equal(statsLine(), 'full tokens · 576/576 + 576/576 tokens · TTFT 150 ms');
    send({ type: 'turnUpdated', turn: finished({ ...STATS, visualTokens: [] }) });
    assert.equal(statsLine(), 'full tokens · no visual tokens · TTFT 150 ms');
  });

  test('the details: why this reduction, the noise band and what was timed, timings, provider, FLOPs, history', () => {
    assert.deepEqual(
      statsDetails({ ...REDUCED, speedup: SLOWER, historyTrimmed: { droppedMessages: 3998, contextTokens: 512 } }),
      [
        ['Why this reduction', 'measured for this model by ficoco tune: 97 % of full-token accuracy'],
        ['Speedup', '0.7× — slower than full tokens on this model'],
        ['Noise band', 'middle half of 5 paired runs: 0.66–0.74×'],
        ['Timed', 'prefill (vision + language model) on cpu'],
        ['Visual tokens', '64 of 576 reached the language model'],
        ['Prefill', '123 ms (vision 40 ms, language model 83 ms)'],
        ['Decode', '12 tokens at 30.3 tokens/s'],
        ['Provider', 'cpu'],
        ['FLOPs', '22 % of the full-token prefill (analytic)'],
        ['History', "3998 earlier messages left out to fit the model's 512-token context"],
      ],
    );
    // Unreduced: no reduction, no speedup; one image's tokens.
    assert.deepEqual(
      statsDetails(STATS).map(([term]) => term),
      ['Visual tokens', 'Prefill', 'Decode', 'Provider'],
    );
    const fellBack = { ...STATS, providerFallback: 'cuda could not be used (no driver), running on CPU instead' };
    assert.deepEqual(statsDetails(fellBack).at(-1), [
      'Provider',
      'cpu — cuda could not be used (no driver), running on CPU instead',
    ]);
  });

  test("a sampled answer's details give its seed after the decode, to get the answer again; a greedy one's none", () => {
    /** The details under the only answer, as term and description. */
    const details = () =>
      [...document.querySelectorAll('.stats-details dt')].map((dt) => [
        dt.textContent,
        dt.nextElementSibling?.textContent,
      ]);
    send({ type: 'turnAdded', turn: finished({ ...STATS, seed: 4_294_967_295 }) });
    assert.deepEqual(details().slice(2, 4), [
      ['Decode', '12 tokens at 30.3 tokens/s'],
      ['Seed', '4294967295 (set ficoco.seed to it to get this answer again)'],
    ]);
    send({ type: 'turnUpdated', turn: finished(STATS) });
    assert.deepEqual(
      details().map(([term]) => term),
      ['Visual tokens', 'Prefill', 'Decode', 'Provider'],
    );
  });

  test('the details are a collapsible, closed at first; Space on its header opens and closes it', async () => {
    send({ type: 'turnAdded', turn: finished({ ...REDUCED, speedup: FASTER }) });
    const details = document.querySelector<HTMLElement>('vscode-collapsible.stats-details')!;
    assert.equal(details.getAttribute('heading'), 'Details');
    assert.equal(details.hasAttribute('open'), false);
    pressSpace(details);
    assert.equal(details.hasAttribute('open'), true);
    // A Space typed inside the content is not the header's.
    key(details.querySelector('dd')!, ' ');
    assert.equal(details.hasAttribute('open'), true);
    pressSpace(details);
    await settle();
    assert.equal(details.hasAttribute('open'), false);
  });
});

describe('scrolling to the newest turn', () => {
  /** happy-dom lays nothing out: the transcript's heights and scroll position are set here. */
  function fakeLayout(element: HTMLElement) {
    const viewport = 100;
    let height = 0;
    let top = 0;
    Object.defineProperty(element, 'clientHeight', { get: () => viewport });
    Object.defineProperty(element, 'scrollHeight', { get: () => height });
    Object.defineProperty(element, 'scrollTop', {
      get: () => top,
      set: (value: number) => (top = Math.max(0, Math.min(value, height - viewport))),
    });
    return {
      atEnd: () => top === height - viewport,
      grow: (to: number) => (height = to),
      top: () => top,
      readerScrollsTo(value: number) {
        element.scrollTop = value;
        element.dispatchEvent(new window.Event('scroll') as unknown as Event);
      },
    };
  }

  test('new content keeps the end in view until the reader scrolls up, and again once they are back', async () => {
    const transcript = document.getElementById('transcript')!;
    const layout = fakeLayout(transcript);
    layout.grow(1000);
    send({ type: 'state', turns: [finished(STATS)], pending: [] });
    assert.ok(layout.atEnd(), 'a loaded conversation shows its end');
    layout.grow(1200);
    send({ type: 'turnAdded', turn: turn({ id: 'turn-2' }) });
    assert.ok(layout.atEnd(), 'a new question is shown');
    layout.grow(1300);
    send({ type: 'replyText', turnId: 'turn-2', reply: 'answer', text: 'The dialog' });
    await nextFrame();
    assert.ok(layout.atEnd(), 'streamed text is followed');

    layout.readerScrollsTo(400);
    layout.grow(1400);
    send({ type: 'replyText', turnId: 'turn-2', reply: 'answer', text: ' says' });
    send({ type: 'turnUpdated', turn: turn({ id: 'turn-2', answer: reply({ status: 'done', stats: STATS }) }) });
    assert.equal(layout.top(), 400, 'the reader who scrolled up stays where they are');

    layout.readerScrollsTo(1300);
    // A thumbnail decodes after its turn was shown and makes it taller.
    layout.grow(1520);
    transcript.querySelector('img')!.dispatchEvent(new window.Event('load') as unknown as Event);
    assert.ok(layout.atEnd(), 'back at the end, the view follows again, images included');
  });

  test('an error that ends the newest turn is shown whole', () => {
    const layout = fakeLayout(document.getElementById('transcript')!);
    layout.grow(500);
    send({ type: 'turnAdded', turn: turn() });
    layout.grow(640);
    send({ type: 'turnUpdated', turn: turn({ answer: reply({ status: 'error', error: 'cut-off.png is cut off' }) }) });
    assert.ok(layout.atEnd());
  });
});

describe('the size a pasted screenshot is sent at', () => {
  test('kept up to 2048 × 2048 pixels; beyond, scaled by area so a tall page keeps a readable width', () => {
    assert.deepEqual(sentSize(1920, 1080), { width: 1920, height: 1080 });
    const tall = sentSize(1280, 20_000);
    // About that many pixels: the short side is rounded up (see below).
    assert.ok(tall.width * tall.height <= MAX_IMAGE_PIXELS * 1.01);
    assert.deepEqual(tall, { width: 519, height: 8095 });
    // 32:1, the widest the engine takes, stays within it once scaled.
    const strip = sentSize(32_000, 1000);
    assert.ok(strip.width / strip.height <= 32, `${strip.width} × ${strip.height}`);
    const wide = sentSize(3840, 2160);
    assert.ok(
      Math.abs(wide.width / wide.height - 16 / 9) < 0.01 && wide.width * wide.height <= MAX_IMAGE_PIXELS * 1.01,
    );
  });
});
