/**
 * Sanitizing model answers, in jsdom — a DOM DOMPurify is tested against upstream — rather than happy-dom, whose
 * parsing does not show what DOMPurify removes. Each case is one that markdown-it lets through, so the test fails
 * if DOMPurify (or its URI rule) were taken out.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { JSDOM } from 'jsdom';
import MarkdownIt, { type Renderer, type Token } from 'markdown-it';
import { renderMarkdown, sanitizeHtml } from '../../webview/markdown';

const NO_ACTIONS = { copy: () => undefined, insert: () => undefined };

function rendered(text: string): HTMLElement {
  const { window } = new JSDOM('<!doctype html><div id="answer"></div>');
  const element = window.document.getElementById('answer')!;
  renderMarkdown(element, text, NO_ACTIONS);
  return element;
}

describe('model answers are sanitized before they reach the page', () => {
  test('links markdown-it keeps but the page must not follow lose their address: command:, vscode:', () => {
    const element = rendered(
      '[open a terminal](command:workbench.action.terminal.new) [install](vscode:extension/evil.ext) ' +
        '[docs](https://code.visualstudio.com/)',
    );
    const hrefs = [...element.querySelectorAll('a')].map((a) => a.getAttribute('href'));
    assert.deepEqual(hrefs, [null, null, 'https://code.visualstudio.com/']);
    assert.match(element.textContent ?? '', /open a terminal install docs/);
  });

  test('raw HTML in the answer stays text, and markdown still renders', () => {
    const element = rendered('**bold** <img src=x onerror=alert(1)>\n\n```sh\nnpm test\n```');
    assert.equal(element.querySelector('strong')?.textContent, 'bold');
    assert.equal(element.querySelector('img'), null);
    assert.match(element.textContent ?? '', /<img src=x onerror=alert\(1\)>/);
    assert.equal(element.querySelector('pre code')?.textContent, 'npm test\n');
    assert.equal(element.querySelectorAll('.code-actions vscode-button').length, 2);
  });

  test('an answer shows no images, not even data: ones the CSP would load; their address is at most a link', () => {
    const element = rendered('![dialog](data:image/png;base64,iVBORw0KGgo=) ![chart](https://example.com/chart.png)');
    assert.equal(element.querySelector('img'), null);
    const links = [...element.querySelectorAll('a')].map((a) => [a.textContent, a.getAttribute('href')]);
    assert.deepEqual(links, [
      ['dialog', null],
      ['chart', 'https://example.com/chart.png'],
    ]);
  });

  test("DOMPurify's own output on hostile HTML, in a real DOM", () => {
    const { window } = new JSDOM('');
    const sanitize = (html: string) => sanitizeHtml(html, window as unknown as Window);
    assert.equal(sanitize('<img src="https://x/y.png" onerror="alert(1)">'), '');
    assert.equal(sanitize('<img src="data:image/png;base64,iVBORw0KGgo=">'), '');
    assert.equal(sanitize('<a href="javascript:alert(1)">x</a><a href="command:evil">y</a>'), '<a>x</a><a>y</a>');
    assert.equal(sanitize('<svg onload="alert(1)"><script>alert(1)</script></svg>'), '<svg></svg>');
    assert.equal(
      sanitize('<iframe src="https://x"></iframe><form action="https://x"><input></form>'),
      '<form action="https://x"><input></form>',
    );
  });

  test('code streamed into an open code block stays text, as a whole render of the answer has it', () => {
    const { window } = new JSDOM('<!doctype html><div id="answer"></div><div id="whole"></div>');
    const [answer, whole] = ['answer', 'whole'].map((id) => window.document.getElementById(id)!);
    let text = '```html\n';
    renderMarkdown(answer!, text, NO_ACTIONS);
    const code = answer!.querySelector('pre code');
    for (const piece of ['</code></pre>', '<img src=x onerror=alert(1)>', '\n<script>alert(1)</script>\n']) {
      text += piece;
      renderMarkdown(answer!, text, NO_ACTIONS);
    }
    assert.ok(answer!.querySelector('pre code') === code, 'the code element grew in place');
    assert.equal(answer!.querySelector('img, script'), null);
    renderMarkdown(whole!, text, NO_ACTIONS);
    assert.equal(answer!.innerHTML, whole!.innerHTML);
  });

  test('where DOMPurify cannot run, the answer is plain text, never unsanitized HTML', () => {
    assert.equal(sanitizeHtml('<b>bold</b>', {} as Window), undefined);
    const { window } = new JSDOM('<div id="a"></div>');
    const element = window.document.getElementById('a')!;
    Object.defineProperty(element, 'ownerDocument', { value: { defaultView: null } });
    renderMarkdown(element, '**bold** [x](command:y)', NO_ACTIONS);
    assert.equal(element.innerHTML, '**bold** [x](command:y)');
  });
});

/** `text` in pieces of `size` characters, as a model streams it. */
function pieces(text: string, size: number): string[] {
  return Array.from({ length: Math.ceil(text.length / size) }, (_, i) => text.slice(i * size, (i + 1) * size));
}

/** The element's tree without whitespace-only text and code actions: what the reader sees, element by element. */
function structure(node: Node): string {
  if (node.nodeType === node.TEXT_NODE) return (node.textContent ?? '').trim();
  const element = node as Element;
  if (element.classList?.contains('code-actions')) return '';
  const children = [...node.childNodes].map(structure).filter((child) => child !== '');
  const attributes = [...element.attributes].map((attribute) => ` ${attribute.name}="${attribute.value}"`);
  return `<${element.tagName}${attributes.join('')}>${children.join('')}</>`;
}

/**
 * Streams `sample` a character at a time unless told, as the chat does (`appended`): at each step the element shows
 * what rendering the text so far in a fresh element shows, and at the end what markdown-it makes of the whole text,
 * sanitized.
 */
function assertStreamsAsWhole(sample: string, frames = (text: string) => pieces(text, 1)): void {
  const { window } = new JSDOM('<!doctype html><div id="answer"></div>');
  const answer = window.document.getElementById('answer')!;
  let text = '';
  for (const piece of frames(sample)) {
    text += piece;
    renderMarkdown(answer, text, NO_ACTIONS, { appended: true });
    const whole = window.document.createElement('div');
    renderMarkdown(whole, text, NO_ACTIONS);
    assert.equal(answer.innerHTML, whole.innerHTML, `after ${JSON.stringify(text)}`);
  }
  // Code that streamed into a block is in a text node per piece: merged, its text compares as the reference's.
  answer.normalize();
  const reference = window.document.createElement('div');
  reference.innerHTML = sanitizeHtml(new MarkdownIt({ breaks: true }).render(sample), window as unknown as Window)!;
  assert.equal(structure(answer), structure(reference).replace('<DIV>', '<DIV id="answer">'));
}

const NESTED_SAMPLES = {
  'code in a list':
    '1. Run this:\n   ```bash\n   npm ci\n   ```\n2. Then this:\n   ```bash\n   npm test\n   ```\n3. Done.\n',
  'nested lists': '- one\n  - one.a\n  - one.b\n    1. deep\n    2. deeper\n- two\n\n- three, now loose\n\nAfter.',
  table: 'Sizes:\n\n| model | tokens |\n|---|--:|\n| LLaVA | 576 |\n| `tiny` | 64 |\n\nThat is all.',
  'tables in a list and a quote':
    '- Sizes:\n\n  | a \\| b | `c` |\n  |:-|:-:|\n  | 1 | **2** |\n  | 3\n\n> | x |\n> |---|\n> | y |\n\n| z |\n|--|\n',
  'quote with code': '> Try:\n>\n> ```ts\n> const a = 1;\n> ```\n>\n> - or a list\n>   ```sh\n>   ls\n>   ```\n\nEnd.',
};

describe('a streamed answer draws only its last, growing block again', () => {
  test('a finished list item keeps its elements, its code block too, while later items stream', () => {
    const { window } = new JSDOM('<!doctype html><div id="answer"></div>');
    const answer = window.document.getElementById('answer')!;
    let text = '';
    let firstItem: Element | undefined;
    let firstCode: Element | undefined;
    let secondCode: Element | undefined;
    for (const piece of pieces(NESTED_SAMPLES['code in a list'], 3)) {
      text += piece;
      renderMarkdown(answer, text, NO_ACTIONS);
      const items = answer.querySelectorAll('li');
      if (!firstItem && items.length === 2) [firstItem, firstCode] = [items[0]!, items[0]!.querySelector('code')!];
      // Taken once its code starts: before that, the fence's info string may still grow.
      if (items[1]?.querySelector('code')?.textContent) secondCode ??= items[1].querySelector('code')!;
    }
    const items = answer.querySelectorAll('li');
    assert.equal(items.length, 3);
    assert.ok(items[0] === firstItem, 'the first item is the same element');
    assert.ok(items[0]!.querySelector('code') === firstCode, 'so is its code');
    assert.ok(items[1]!.querySelector('code') === secondCode, 'the second code block grew in place');
    assert.equal(items[1]!.querySelector('code')?.textContent, 'npm test\n');
  });

  test('a table keeps its header and finished rows, and a selection in a finished cell, while rows stream', () => {
    const { window } = new JSDOM('<!doctype html><div id="answer"></div>');
    const answer = window.document.getElementById('answer')!;
    const selection = window.getSelection()!;
    let text = '';
    let header: Element | undefined;
    let firstRow: Element | undefined;
    for (const piece of pieces(NESTED_SAMPLES.table, 3)) {
      text += piece;
      renderMarkdown(answer, text, NO_ACTIONS);
      header ??= answer.querySelector('thead') ?? undefined;
      // Taken once the second row starts: the first is finished then.
      const rows = answer.querySelectorAll('tbody tr');
      if (!firstRow && rows.length === 2) {
        firstRow = rows[0]!;
        selection.selectAllChildren(firstRow.querySelector('td')!);
      }
    }
    assert.ok(answer.querySelector('thead') === header, 'the header is the same element');
    assert.ok(answer.querySelector('tbody tr') === firstRow, 'so is the first row');
    assert.equal(answer.querySelectorAll('tbody tr').length, 2);
    assert.equal(selection.toString(), 'LLaVA', 'the selection in its first cell is still there');
  });

  for (const [name, sample] of Object.entries(NESTED_SAMPLES))
    test(`streamed, it is drawn as a whole render draws it at each step: ${name}`, () => assertStreamsAsWhole(sample));
});

/**
 * A long answer of `sections` sections, each 40 lines with one code block at the top level and one in a list, and a
 * link to a reference defined at the top.
 */
function longAnswer(sections: number): string {
  const section = (i: number) =>
    [
      `## Step ${i}`,
      '',
      ...Array.from({ length: 7 }, (_, line) => `Line ${line} of step ${i} says **what** to do and \`why\`.`),
      `As [the docs][docs] say.`,
      '',
      '```ts',
      ...Array.from({ length: 10 }, (_, line) => `const value${line} = step(${i}, ${line});`),
      '```',
      '',
      `1. First, for step ${i}:`,
      '   ```sh',
      ...Array.from({ length: 6 }, (_, line) => `   npm run step-${i}-${line}`),
      '   ```',
      '2. Then check it:',
      '   - it builds',
      '   - it passes',
      '',
      '> Note: done.',
      '',
    ].join('\n');
  return ['[docs]: https://example.com/docs', '', ...Array.from({ length: sections }, (_, i) => section(i))].join('\n');
}

/** Answers whose later text changes how earlier blocks parse, or whose lines end otherwise. */
const SETTLING_SAMPLES = {
  'a list continued after a line that was a paragraph': '1. a\n   ```\n   x\n   ```\n2. b\n\nPara\n\n3. c\n- d',
  'references defined after their use, while they stream':
    'See [docs][d] and [more].\n\nText.\n\n- [d] again\n\n[d]: https://example.com/docs\n' +
    '[more]: https://example.com/more "More"\n\nEnd [d], [d]: https://example.com/other\n\n[d]: https://example.com/x',
  'headings, rules, interruptions and indented code':
    'Title\n=====\n\nPara\nSub\n---\n\n***\n\nText\n1. interrupts\n2. it\n\n    indented\n\n    code\n\nx\n> q\nlazy',
  'fences that close, stay open on fence-like lines, and follow one another':
    'Intro\n```ts\na\n``\n```x\n  ```  \nb\n````\nafter\n```\n`````\n  ~~~ sh\n  c\n d\ne\n\tf\n  ~~~~\n\r\n' +
    '```\r\nx\r\n\r\n```\r\nPara\n===\n- ```\n  in a list\n  ```\n\n```\rleft\n\nopen\n``',
  'Windows line endings and runs of blank lines':
    'One\r\n\r\n- a\r\n- b\r\n\r\n\r\n```\r\ncode\r\n```\r\n\r\nTwo\rThree\n\n\nFour',
};

/** Code blocks streaming at the end of list items and quotes, and the lines that end them or only look as if they would. */
const NESTED_FENCE_SAMPLES = {
  'in an ordered list, followed by more items':
    '1. Run this:\n\n   ```sh\n   npm ci\n\n     npm test\n  \n   ```\n2. Then:\n   ```\n   a\n   ```\n3. Done.',
  'in a bullet list nested in an ordered one, with Windows line endings':
    '1. Build:\n   - first:\n     ```ts\n     const a = 1;\n       indented\n     ```\n   - then\n     ```\n     b\n2. Done\n' +
    '   * ```\r\n     c\r\n\r\n     d\0\r\n',
  'ended by a line indented less than the item': '- a\n  ```\n  x\n y\nz\n\n* ```\n  w\n\n  v\n\n1. ~~~\n   u\n  t\n',
  'indented within the item, after tabs, and lines that only look like fences':
    '1. a\n\n     ```\n     x\n    y\n        ```\n     ````\n     ```\n-\t```\n\tcode\n  \t~~~\n\t```\n' +
    '10. ~~~~ sh\n    q\n   \n    ~~~~\n- - ```\n    deep\n   ```\n    ```\n> - ```\n>   quoted\n',
  'ended by a reference definition, which links a word above':
    'See [a].\n\n- ```\n  code\n[a]: https://example.com/a\n',
  'in a quote, with quoted blank lines, then more quoted text':
    '> Run:\n>\n> ```sh\n> a\n>\n> b\n> ```\n> Then look.\n',
  'in quotes without the space after ">", with tabs after it, indented':
    '>```\n>a\n> b\n>\tc\n>\t\td\n>  e\n>```\n\n>\t```ts\n>\tx\n>\t  y\n>\n\n   > ```\n    > f\n  >g\n',
  'in a quote, ended by a lazy line or a reference definition':
    'See [r].\n\n> ```\n> a\nlazy\n> b\n\n> ~~~\n> c\n[r]: https://example.com/r\n',
  'in a quote ended by a blank line, then more text': '> ```\n> code\n\nMore text.\n\n> ```\n> x\n   \n> y',
  'in nested quotes': '> > ```\n> > a\n> b\n> > ```\n>> c\n> > d\n>\n> > e\n',
  'in a list in a quote, and a quote in a list':
    '> 1. Run:\n>    ```sh\n>    a\n>   b\n>    c\n> 2. ```\n>    d\n\n- > ```\n  > e\n > f\n- x\n  > ```\n  > g\n  >h\n',
  'in a quote in a list in a quote': '> - > ```\n>   > a\n>  > b\n> - > ```\n>   >c\n>   d\n',
  'in quotes, with Windows line endings and NUL':
    '> ```\r\n> a\0\r\n>\r\n> b\r\n> ```\r\n\r\n> - ```\r\n>   c\0\r\n>   d\r\n',
  'whose opening line and the next would read as a table where the item ended':
    '- a\n\n     ```x|y\n      |-|-|\n     ```z\n     w\n',
  'in a quote, with lines that only look like fences': '> ````\n> ```\n>  ````x\n> `````  \n> ~~~~\n>    ````\n',
};

/** Characters parsed as markdown, rendered as HTML (the tokens' text) and parsed as HTML (DOMPurify) to stream. */
interface StreamingWork {
  parsed: number;
  rendered: number;
  sanitized: number;
  lines: number;
}

/** The lines of `sample`, a frame each. */
function frameEachLine(sample: string): string[] {
  return sample.split(/(?<=\n)/);
}

/** The lines of `sample` in two frames each, its indentation and quote markers then the rest, as model tokens may. */
function frameIndentationThenCode(sample: string): string[] {
  return sample.split(/(?<=\n)|(?<=^[ >]+)(?=[^ >])/m);
}

/** How a reply's lines may reach the page: whole, or cut where a model's tokens often end. */
const FRAMINGS = {
  'a line a frame': frameEachLine,
  'a line in two frames, its indentation then its code': frameIndentationThenCode,
};

/** Streams `sample` into `answer` in `frames`, as the chat does; returns the whole text. */
function stream(answer: HTMLElement, sample: string, frames: (sample: string) => string[]): string {
  let text = '';
  for (const frame of frames(sample)) {
    text += frame;
    renderMarkdown(answer, text, NO_ACTIONS, { appended: true });
  }
  return text;
}

/** Streams answers (a line a frame unless told), counting the characters markdown-it and DOMPurify take. */
function streamingWork(t: TestContext): (sample: string, frames?: (sample: string) => string[]) => StreamingWork {
  const { window } = new JSDOM('');
  const parse = t.mock.method(MarkdownIt.prototype, 'parse');
  const render = t.mock.method(Object.getPrototypeOf(new MarkdownIt().renderer) as Renderer, 'render');
  const sanitize = t.mock.method(window.DOMParser.prototype, 'parseFromString');
  return (sample, frames = frameEachLine) => {
    const callsBefore = [parse, render, sanitize].map((method) => method.mock.callCount());
    const text = stream(window.document.createElement('div'), sample, frames);
    const [parsed, rendered, sanitized] = [parse, render, sanitize].map((method, i) =>
      method.mock.calls.slice(callsBefore[i]).reduce((sum, call) => sum + characters(call.arguments[0]), 0),
    );
    return { parsed: parsed!, rendered: rendered!, sanitized: sanitized!, lines: text.split('\n').length };
  };
}

/** The characters of a string, or of the tokens' text. */
function characters(argument: string | Token[]): number {
  return typeof argument === 'string'
    ? argument.length
    : argument.reduce((sum, token) => sum + token.content.length, 0);
}

/** Asserts that the work for answers 1, 2 and 4 times as long grows about 2× and 4× (linear), not 4× and 16×. */
function assertLinear(t: TestContext, small: StreamingWork, medium: StreamingWork, large: StreamingWork): void {
  for (const kind of ['parsed', 'rendered', 'sanitized'] as const) {
    const growth = [medium[kind] / small[kind], large[kind] / small[kind]];
    t.diagnostic(`${kind}: ${small[kind]}, ${medium[kind]}, ${large[kind]} characters`);
    assert.ok(growth[0]! < 2.6 && growth[1]! < 5.5, `${kind} grew ${growth.map((g) => g.toFixed(1)).join('×, ')}×`);
  }
}

/** `lines` lines of code, each indented by `indent`. */
function code(lines: number, indent = ''): string[] {
  return Array.from({ length: lines }, (_, line) => `${indent}v${line} = x < f(${line});`);
}

/** An answer with a code block of `lines` lines between two paragraphs. */
function codeBlock(lines: number): string {
  return ['Run:', '', '```ts', ...code(lines), '```', '', 'Done.'].join('\n');
}

/** Answers with a code block of `lines` lines at the end of a list item or a quote, nested in one another. */
const NESTED_CODE_BLOCKS = {
  'in an ordered list': (lines: number) =>
    ['1. Run this:', '', '   ```sh', ...code(lines, '   '), '   ```', '2. Done.'].join('\n'),
  'in a bullet list in an ordered list': (lines: number) =>
    ['1. Build:', '   - first:', '     ```ts', ...code(lines, '     '), '     ```', '   - then', '2. Done.'].join('\n'),
  'in a quote': (lines: number) =>
    ['> Run this:', '>', '> ```sh', ...code(lines, '> '), '> ```', '', 'Done.'].join('\n'),
  'in an ordered list in a quote': (lines: number) =>
    ['> 1. Run:', '>    ```sh', ...code(lines, '>    '), '>    ```', '> 2. Done.'].join('\n'),
  'in a quote in a bullet list': (lines: number) =>
    ['- Log:', '  > ```', ...code(lines, '  > '), '  > ```', '- Done.'].join('\n'),
};

describe('a long streamed answer costs work in proportion to its length', () => {
  for (const [name, sample] of Object.entries(SETTLING_SAMPLES))
    test(`parsed from its last blocks on, it is drawn as a whole render draws it: ${name}`, () =>
      assertStreamsAsWhole(sample));

  for (const [name, sample] of Object.entries(NESTED_FENCE_SAMPLES))
    test(`a code block streaming in a list item or a quote is drawn as a whole render draws it: ${name}`, () => {
      assertStreamsAsWhole(sample);
      // Lines that arrive together are parsed together on the fast path: what one character at a time never shows.
      assertStreamsAsWhole(sample, frameEachLine);
    });

  test('parsing and sanitizing grow linearly: four times the answer, about four times the work, not sixteen', (t) => {
    const work = streamingWork(t);
    const [small, medium, large] = [13, 26, 52].map((sections) => work(longAnswer(sections)));
    assert.ok(large!.lines >= 2000, `${large!.lines} lines`);
    assertLinear(t, small!, medium!, large!);
  });

  test('a long code block is parsed line by line as it streams, not again whole with every line', (t) => {
    const work = streamingWork(t);
    const [small, medium, large] = [500, 1000, 2000].map((lines) => work(codeBlock(lines)));
    assertLinear(t, small!, medium!, large!);
  });

  for (const [name, answer] of Object.entries(NESTED_CODE_BLOCKS))
    for (const [framing, frames] of Object.entries(FRAMINGS))
      test(`a long code block in a list item or a quote is parsed and drawn line by line as it streams ${framing}: ${name}`, (t) => {
        const work = streamingWork(t);
        const [small, medium, large] = [500, 1000, 2000].map((lines) => work(answer(lines), frames));
        assertLinear(t, small!, medium!, large!);
      });
});
