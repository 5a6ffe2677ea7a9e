import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AnswerStats } from '../../src/protocol/engine';
import { HostMessage, MessageError, Turn, parseHostMessage, parseWebviewMessage } from '../../src/protocol/webview';
import { MAX_PREVIEW_BYTES, Transcript, statsView, turnImage } from '../../src/extension/transcript';
import { webviewHtml } from '../../src/extension/webviewHtml';

const STATS: AnswerStats = {
  promptTokens: 600,
  generatedTokens: 12,
  visualTokens: [{ original: 576, atDecoder: 64 }],
  steps: [],
  preprocessMs: 3,
  visionMs: 40,
  prefillMs: 80,
  ttftMs: 150,
  decodeTokensPerSecond: 30,
  flops: { run: { vision: 3.7e11, projector: 1e9, llm: 1.61e12, total: 1.98e12 }, unreduced: { vision: 3.9e11, projector: 1e10, llm: 8.45e12, total: 8.84e12 } },
  provider: 'cpu',
};

const TURN: Turn = { id: 'turn-1', question: 'what is it?', images: [{ name: 'a.png', src: 'data:image/png;base64,AAAA' }], answer: 'a cat', status: 'done', stopReason: 'stop-token', stats: statsView(STATS) };

function refusal(parse: (value: unknown) => unknown, value: unknown): string {
  try {
    parse(value);
  } catch (error) {
    assert.ok(error instanceof MessageError);
    return error.message;
  }
  assert.fail(`accepted ${JSON.stringify(value)}`);
}

describe('webview messages', () => {
  test('every extension → webview message survives a round trip through the parser', () => {
    const messages: HostMessage[] = [
      { type: 'transcript', turns: [TURN, { id: 'turn-2', question: 'q', images: [{ name: 'big.png' }], answer: '', status: 'error', error: 'failed' }] },
      { type: 'turnAdded', turn: { ...TURN, status: 'waiting', answer: '' } },
      { type: 'answerText', turnId: 'turn-1', text: ' cat' },
      { type: 'answerDone', turnId: 'turn-1', stopReason: 'max-tokens', stats: statsView({ ...STATS, providerFallback: 'no CUDA' }) },
      { type: 'answerDone', turnId: 'turn-1', stopReason: 'cancelled' },
      { type: 'answerError', turnId: 'turn-1', message: 'The engine crashed.' },
    ];
    for (const message of messages) assert.deepEqual(parseHostMessage(structuredClone(message)), message);
  });

  test('webview → extension messages', () => {
    assert.deepEqual(parseWebviewMessage({ type: 'ready' }), { type: 'ready' });
    assert.deepEqual(parseWebviewMessage({ type: 'stop', turnId: 'turn-3', extra: 1 }), { type: 'stop', turnId: 'turn-3' });
  });

  test('refusals name what is wrong', () => {
    assert.match(refusal(parseWebviewMessage, null), /message is null; expected an object/);
    assert.match(refusal(parseWebviewMessage, { type: 'stop' }), /turnId is missing/);
    assert.match(refusal(parseWebviewMessage, { type: 'ask' }), /message type is "ask"; expected ready or stop/);
    assert.match(refusal(parseHostMessage, { type: 'answerText', turnId: 't', text: 3 }), /text is 3; expected a string/);
    assert.match(refusal(parseHostMessage, { type: 'answerDone', turnId: 't', stopReason: 'eos' }), /stopReason is "eos"/);
    assert.match(refusal(parseHostMessage, { type: 'transcript', turns: [{ ...TURN, status: 'thinking' }] }), /turns\[0\]\.status is "thinking"/);
    const badStats = { ...TURN.stats, visualTokens: [{ original: 576, atDecoder: -1 }] };
    assert.match(refusal(parseHostMessage, { type: 'turnAdded', turn: { ...TURN, stats: badStats } }), /turn\.stats\.visualTokens\[0\]\.atDecoder is -1/);
  });

  test('image sources are only data:image URLs or webview resources', () => {
    const withSrc = (src: string) => ({ type: 'turnAdded', turn: { ...TURN, images: [{ name: 'a.png', src }] } });
    assert.match(refusal(parseHostMessage, withSrc('javascript:alert(1)')), /turn\.images\[0\]\.src is not a data:image URL/);
    assert.match(refusal(parseHostMessage, withSrc('https://example.com/a.png')), /src is not/);
    assert.doesNotThrow(() => parseHostMessage(withSrc('https://file+.vscode-resource.vscode-cdn.net/home/me/a.png')));
  });
});

describe('transcript kept by the extension', () => {
  test('each change returns its message, and the snapshot holds everything so far', () => {
    const transcript = new Transcript();
    const { turnId, message } = transcript.addTurn('what is it?', [{ name: 'a.png' }]);
    assert.deepEqual(message, { type: 'turnAdded', turn: { id: turnId, question: 'what is it?', images: [{ name: 'a.png' }], answer: '', status: 'waiting' } });
    assert.deepEqual(transcript.appendText(turnId, 'a '), { type: 'answerText', turnId, text: 'a ' });
    transcript.appendText(turnId, 'cat');
    const second = transcript.addTurn('and now?', []).turnId;
    assert.notEqual(second, turnId);
    transcript.fail(second, 'The engine crashed.');
    const snapshot = transcript.snapshot();
    assert.equal(snapshot.type, 'transcript');
    assert.deepEqual(
      snapshot.type === 'transcript' && snapshot.turns.map((turn) => [turn.answer, turn.status, turn.error]),
      [
        ['a cat', 'streaming', undefined],
        ['', 'error', 'The engine crashed.'],
      ],
    );
    assert.deepEqual(parseHostMessage(snapshot), snapshot);
  });

  test('a finished turn keeps only the stats the webview shows', () => {
    const transcript = new Transcript();
    const { turnId } = transcript.addTurn('q', []);
    const done = transcript.finish(turnId, 'stop-token', STATS);
    assert.ok(done.type === 'answerDone' && done.stats);
    assert.equal('steps' in done.stats, false);
    assert.equal('promptTokens' in done.stats, false);
    assert.deepEqual(parseHostMessage(done), done);
  });

  test('snapshots are copies: later changes do not alter a sent snapshot', () => {
    const transcript = new Transcript();
    const { turnId } = transcript.addTurn('q', []);
    const before = transcript.snapshot();
    transcript.appendText(turnId, 'later');
    assert.equal(before.type === 'transcript' && before.turns[0]?.answer, '');
  });

  test('images are inlined as data URLs up to a size, by their file type', () => {
    assert.deepEqual(turnImage('Shot.PNG', new Uint8Array([1, 2, 3])), { name: 'Shot.PNG', src: 'data:image/png;base64,AQID' });
    assert.equal(turnImage('photo.jpg', new Uint8Array([1])).src, 'data:image/jpeg;base64,AQ==');
    assert.deepEqual(turnImage('big.png', new Uint8Array(MAX_PREVIEW_BYTES + 1)), { name: 'big.png' });
    assert.deepEqual(turnImage('notes.txt', new Uint8Array([1])), { name: 'notes.txt' });
  });
});

describe('webview page', () => {
  const page = { cspSource: 'https://webview.test', scriptUri: 'https://webview.test/dist/webview.js', styleUri: 'https://webview.test/dist/webview.css', title: 'FiCoCo' };

  test('a strict CSP whose nonce is the script tag’s', () => {
    const html = webviewHtml(page, 'abc123');
    assert.match(html, /content="default-src 'none'; img-src https:\/\/webview.test data:; style-src https:\/\/webview.test; script-src 'nonce-abc123'; font-src https:\/\/webview.test"/);
    assert.match(html, /<script nonce="abc123" src="https:\/\/webview.test\/dist\/webview.js"><\/script>/);
    assert.match(html, /<link rel="stylesheet" href="https:\/\/webview.test\/dist\/webview.css">/);
    assert.doesNotMatch(html, /unsafe-inline|unsafe-eval|<style/);
  });

  test('a fresh nonce each time', () => {
    const nonce = (html: string) => /script-src 'nonce-([^']+)'/.exec(html)?.[1];
    const first = nonce(webviewHtml(page));
    assert.ok(first && first.length >= 16);
    assert.notEqual(first, nonce(webviewHtml(page)));
  });
});
