import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { Window } from 'happy-dom';
import { webviewHtml } from '../../src/extension/webviewHtml';
import type { AnswerStatsView, HostMessage, Turn, WebviewMessage } from '../../src/protocol/webview';
import { TranscriptView, formatStats, startTranscriptView } from '../../webview/transcriptView';

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

function turn(overrides: Partial<Turn> = {}): Turn {
  return { id: 'turn-1', question: 'What does the dialog say?', images: [{ name: 'shot.png', src: PNG_DATA_URL }], answer: '', status: 'waiting', ...overrides };
}

/** The real page the extension builds, in happy-dom, with the view started on it and what it posts recorded. */
let window: Window;
let document: Document;
let posted: WebviewMessage[];
let view: TranscriptView;

beforeEach(() => {
  window = new Window({ settings: { disableJavaScriptFileLoading: true, disableCSSFileLoading: true, disableJavaScriptEvaluation: true } });
  document = window.document as unknown as Document;
  document.write(webviewHtml({ cspSource: 'https://webview.test', scriptUri: 'https://webview.test/webview.js', styleUri: 'https://webview.test/webview.css', title: 'FiCoCo' }));
  posted = [];
  view = startTranscriptView(document, (message) => posted.push(message));
});

afterEach(async () => {
  await window.happyDOM.close();
});

function send(message: HostMessage): void {
  view.receive(structuredClone(message));
}

function turnElements(): HTMLElement[] {
  return [...document.querySelectorAll<HTMLElement>('#transcript .turn')];
}

function only<T>(items: T[]): T {
  assert.equal(items.length, 1);
  return items[0]!;
}

describe('webview transcript', () => {
  test('says ready once it starts, so the extension sends the transcript', () => {
    assert.deepEqual(posted, [{ type: 'ready' }]);
  });

  test('the transcript is a polite live region', () => {
    const transcript = document.getElementById('transcript')!;
    assert.equal(transcript.getAttribute('aria-live'), 'polite');
  });

  test('renders a transcript: question, thumbnail, answer text and stats', () => {
    send({
      type: 'transcript',
      turns: [
        turn({ id: 'turn-1', answer: 'It says "Saved".', status: 'done', stopReason: 'stop-token', stats: STATS }),
        turn({ id: 'turn-2', question: 'And the title?', images: [{ name: 'huge.png' }], answer: 'Set', status: 'streaming' }),
      ],
    });
    const [first, second] = turnElements();
    assert.ok(first && second);
    assert.equal(first.dataset.turnId, 'turn-1');
    assert.equal(first.querySelector('.question-text')?.textContent, 'What does the dialog say?');
    const thumbnail = first.querySelector('img.thumbnail');
    assert.equal(thumbnail?.getAttribute('src'), PNG_DATA_URL);
    assert.equal(thumbnail?.getAttribute('alt'), 'shot.png');
    assert.equal(first.querySelector('.answer')?.textContent, 'It says "Saved".');
    assert.equal(first.querySelector('.stats')?.textContent, formatStats(STATS));
    assert.equal(first.querySelector('.stop'), null);
    // No preview: the file name stands in for the thumbnail; a streaming turn can still be stopped.
    assert.equal(second.querySelector('img'), null);
    assert.equal(second.querySelector('.image-name')?.textContent, 'huge.png');
    assert.ok(second.querySelector('vscode-button.stop'));
    assert.equal(second.getAttribute('aria-busy'), 'true');
  });

  test('a transcript replaces what was drawn before (the webview reloaded)', () => {
    send({ type: 'transcript', turns: [turn({ id: 'turn-1' }), turn({ id: 'turn-2' })] });
    send({ type: 'transcript', turns: [turn({ id: 'turn-1', answer: 'all of it', status: 'done', stopReason: 'stop-token' })] });
    assert.equal(only(turnElements()).querySelector('.answer')?.textContent, 'all of it');
  });

  test('answer model output as text, never as markup', () => {
    send({ type: 'turnAdded', turn: turn() });
    send({ type: 'answerText', turnId: 'turn-1', text: '<img src=x onerror=alert(1)>' });
    const answer = only(turnElements()).querySelector('.answer')!;
    assert.equal(answer.children.length, 0);
    assert.equal(answer.textContent, '<img src=x onerror=alert(1)>');
  });

  test('streamed pieces append to their own turn, and the first replaces the waiting note', () => {
    send({ type: 'transcript', turns: [turn({ id: 'turn-1', answer: 'Done.', status: 'done', stopReason: 'stop-token' })] });
    send({ type: 'turnAdded', turn: turn({ id: 'turn-2' }) });
    const second = turnElements()[1]!;
    assert.equal(second.dataset.status, 'waiting');
    assert.ok(second.querySelector('.waiting'));
    for (const piece of ['The ', 'dialog ', 'says ', '"Saved".']) send({ type: 'answerText', turnId: 'turn-2', text: piece });
    assert.equal(second.querySelector('.answer')?.textContent, 'The dialog says "Saved".');
    assert.equal(second.dataset.status, 'streaming');
    assert.equal(second.querySelector('.waiting'), null);
    assert.equal(turnElements()[0]!.querySelector('.answer')?.textContent, 'Done.');
  });

  test('a finished answer loses its Stop button and gains the stats line', () => {
    send({ type: 'turnAdded', turn: turn() });
    send({ type: 'answerText', turnId: 'turn-1', text: 'Saved.' });
    send({ type: 'answerDone', turnId: 'turn-1', stopReason: 'stop-token', stats: STATS });
    const element = only(turnElements());
    assert.equal(element.querySelector('.stop'), null);
    assert.equal(element.hasAttribute('aria-busy'), false);
    assert.equal(element.dataset.status, 'done');
    assert.equal(element.querySelector('.stats')?.textContent, 'visual tokens 64/576 · prefill 123 ms (vision 40 ms) · TTFT 150 ms · 12 tokens at 30.3 tokens/s · cpu');
    assert.equal(element.querySelector('.note'), null);
  });

  test('a stopped answer says so, with or without stats', () => {
    send({ type: 'transcript', turns: [turn({ id: 'turn-1' }), turn({ id: 'turn-2' })] });
    send({ type: 'answerDone', turnId: 'turn-1', stopReason: 'cancelled', stats: STATS });
    send({ type: 'answerDone', turnId: 'turn-2', stopReason: 'cancelled' });
    const [first, second] = turnElements();
    assert.equal(first?.querySelector('.note')?.textContent, 'Stopped.');
    assert.ok(first?.querySelector('.stats'));
    assert.equal(second?.querySelector('.note')?.textContent, 'Stopped.');
    assert.equal(second?.querySelector('.stats'), null);
  });

  test('an error shows inline with its message and ends the turn', () => {
    send({ type: 'turnAdded', turn: turn() });
    send({ type: 'answerText', turnId: 'turn-1', text: 'The dia' });
    send({ type: 'answerError', turnId: 'turn-1', message: 'The FiCoCo engine process stopped unexpectedly.' });
    const element = only(turnElements());
    assert.equal(element.querySelector('.error')?.textContent, 'The FiCoCo engine process stopped unexpectedly.');
    assert.equal(element.querySelector('.answer')?.textContent, 'The dia');
    assert.equal(element.querySelector('.stop'), null);
    assert.equal(element.dataset.status, 'error');
  });

  test('an error from a transcript snapshot shows too', () => {
    send({ type: 'transcript', turns: [turn({ status: 'error', error: 'config.json is missing' })] });
    assert.equal(only(turnElements()).querySelector('.error')?.textContent, 'config.json is missing');
  });

  test('Stop posts a stop for its turn, once', () => {
    send({ type: 'transcript', turns: [turn({ id: 'turn-1', status: 'streaming' }), turn({ id: 'turn-2', status: 'streaming' })] });
    const stop = turnElements()[0]!.querySelector<HTMLElement>('.stop')!;
    stop.click();
    stop.click();
    assert.deepEqual(posted, [{ type: 'ready' }, { type: 'stop', turnId: 'turn-1' }]);
    assert.ok(stop.hasAttribute('disabled'));
  });

  test('Escape stops the newest running answer', () => {
    send({ type: 'transcript', turns: [turn({ id: 'turn-1', status: 'streaming' }), turn({ id: 'turn-2', status: 'waiting' }), turn({ id: 'turn-3', answer: 'x', status: 'done', stopReason: 'stop-token' })] });
    document.dispatchEvent(new window.KeyboardEvent('keydown', { key: 'Escape' }) as unknown as Event);
    assert.deepEqual(posted.at(-1), { type: 'stop', turnId: 'turn-2' });
  });

  test('malformed messages are ignored', () => {
    const errors: unknown[] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => errors.push(args);
    try {
      view.receive({ type: 'answerText', turnId: 'turn-1' });
      view.receive('hello');
    } finally {
      console.error = consoleError;
    }
    assert.equal(errors.length, 2);
    assert.equal(turnElements().length, 0);
  });

  test('messages for unknown turns change nothing', () => {
    send({ type: 'turnAdded', turn: turn() });
    send({ type: 'answerText', turnId: 'turn-9', text: 'lost' });
    send({ type: 'answerError', turnId: 'turn-9', message: 'lost' });
    assert.equal(only(turnElements()).textContent?.includes('lost'), false);
  });
});

describe('stats line', () => {
  test('several images, a provider fallback, no visual tokens', () => {
    const stats: AnswerStatsView = { ...STATS, visualTokens: [{ original: 576, atDecoder: 144 }, { original: 576, atDecoder: 72 }], providerFallback: 'CUDA libraries are missing' };
    assert.match(formatStats(stats), /^visual tokens 144\/576 \+ 72\/576 · /);
    assert.match(formatStats(stats), / · cpu \(CUDA libraries are missing\)$/);
    assert.match(formatStats({ ...STATS, visualTokens: [] }), /^visual tokens none · /);
  });
});
