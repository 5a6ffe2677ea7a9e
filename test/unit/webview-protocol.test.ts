import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { MAX_IMAGES_PER_QUESTION, MAX_IMAGE_BYTES } from '../../src/common/imageFile';
import { Conversation, MAX_PREVIEW_BYTES, turnImage } from '../../src/extension/conversation';
import { webviewHtml } from '../../src/extension/webviewHtml';
import {
  HostMessage,
  MAX_QUESTION_CHARS,
  MAX_TEXT_CHARS,
  MessageError,
  Turn,
  WebviewMessage,
  parseHostMessage,
  parseWebviewMessage,
} from '../../src/protocol/webview';
import { REDUCED_ANSWER_STATS } from '../helpers/answerStats';

const STATS = REDUCED_ANSWER_STATS;

const TURN: Turn = {
  id: 'turn-1',
  question: 'what is it?',
  images: [{ name: 'a.png', src: 'data:image/png;base64,AAAA' }],
  answer: { text: 'a cat', status: 'done', stopReason: 'stop-token', stats: STATS },
};

/** An image as the extension keeps it: the file's bytes, base64, and the format its header says. */
const image = (name: string) => ({ name, dataBase64: 'iVBORw==', format: 'png' as const });

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
      {
        type: 'state',
        turns: [
          TURN,
          {
            id: 'turn-2',
            question: 'q',
            images: [{ name: 'big.png' }, { name: 'old.png', notKept: true }],
            answer: { text: '', status: 'error', error: 'failed' },
          },
        ],
        pending: [{ id: 'image-3', name: 'b.png' }],
      },
      { type: 'state', turns: [], pending: [], notice: 'notes.png is not an image' },
      { type: 'turnAdded', turn: { ...TURN, answer: { text: '', status: 'waiting' } } },
      { type: 'turnUpdated', turn: { ...TURN, full: { text: 'a dog', status: 'streaming' } } },
      {
        type: 'turnUpdated',
        turn: { ...TURN, full: { text: '', status: 'waiting', progress: 'Reading the image', stopping: true } },
      },
      { type: 'replyText', turnId: 'turn-1', reply: 'full', text: ' cat' },
      { type: 'replyProgress', turnId: 'turn-1', reply: 'answer', label: 'Reading the image: part 2 of 10' },
      { type: 'pending', pending: [] },
      { type: 'notice', message: 'Paste an image first.' },
      { type: 'questionHeld', question: 'what is it?', message: 'a.heic is not an image … The question was not sent.' },
    ];
    for (const message of messages) assert.deepEqual(parseHostMessage(structuredClone(message)), message);
  });

  test('every webview → extension message', () => {
    const messages: WebviewMessage[] = [
      { type: 'ready' },
      { type: 'ask', question: 'what colour is the circle ?' },
      { type: 'stop', turnId: 'turn-3' },
      { type: 'compare', turnId: 'turn-3' },
      { type: 'newChat' },
      { type: 'attach' },
      { type: 'addImages', images: [{ name: 'paste.png', dataBase64: 'iVBORw==' }], refused: [] },
      {
        type: 'addImages',
        images: [],
        refused: ['a.heic is not an image FiCoCo can read: use PNG, JPEG, WebP or GIF.'],
      },
      { type: 'addUris', uris: ['file:///home/me/shot.png'] },
      { type: 'removeImage', id: 'image-2' },
      { type: 'copy', text: 'npm test' },
      { type: 'insert', text: 'npm test' },
    ];
    for (const message of messages)
      assert.deepEqual(parseWebviewMessage({ ...structuredClone(message), extra: 1 }), message);
  });

  test('every field a page sends is bounded: counts, lengths and image sizes', () => {
    const long = (n: number) => 'x'.repeat(n);
    const tooBig = Math.ceil((MAX_IMAGE_BYTES + 3) / 3) * 4;
    const refusals: [unknown, RegExp][] = [
      [{ type: 'ask', question: long(MAX_QUESTION_CHARS + 1) }, /question has \d+ characters; at most 100000/],
      [{ type: 'stop', turnId: long(200) }, /turnId has 200 characters/],
      [{ type: 'removeImage', id: long(200) }, /id has 200 characters/],
      [{ type: 'copy', text: long(MAX_TEXT_CHARS + 1) }, /text has \d+ characters/],
      [{ type: 'insert', text: long(MAX_TEXT_CHARS + 1) }, /text has \d+ characters/],
      [
        {
          type: 'addImages',
          images: Array.from({ length: MAX_IMAGES_PER_QUESTION + 1 }, () => ({
            name: 'a.png',
            dataBase64: 'iVBORw==',
          })),
          refused: [],
        },
        /images has 9 entries; at most 8/,
      ],
      [{ type: 'addImages', images: [{ name: 'a.png', dataBase64: long(tooBig) }], refused: [] }, /dataBase64 has/],
      [{ type: 'addImages', images: [{ name: long(2000), dataBase64: 'iVBORw==' }], refused: [] }, /name has 2000/],
      [{ type: 'addImages', images: [], refused: Array.from({ length: 100 }, () => 'no') }, /refused has 100 entries/],
      [{ type: 'addImages', images: [], refused: [long(10_000)] }, /refused\[0\] has 10000 characters/],
      [{ type: 'addUris', uris: Array.from({ length: 5000 }, () => 'file:///a.png') }, /uris has 5000 entries/],
      [{ type: 'addUris', uris: [`file:///${long(20_000)}.png`] }, /uris\[0\] has \d+ characters/],
    ];
    for (const [message, pattern] of refusals) assert.match(refusal(parseWebviewMessage, message), pattern);
    // At the bounds, accepted.
    parseWebviewMessage({ type: 'ask', question: long(MAX_QUESTION_CHARS) });
    parseWebviewMessage({
      type: 'addImages',
      images: Array.from({ length: MAX_IMAGES_PER_QUESTION }, () => ({ name: 'a.png', dataBase64: 'iVBORw==' })),
      refused: Array.from({ length: MAX_IMAGES_PER_QUESTION + 1 }, () => 'why'),
    });
  });

  test('refusals name what is wrong', () => {
    assert.match(refusal(parseWebviewMessage, null), /message is null; expected an object/);
    assert.match(refusal(parseWebviewMessage, { type: 'stop' }), /turnId is missing/);
    assert.match(refusal(parseWebviewMessage, { type: 'paste' }), /message type is "paste"; expected ready, ask/);
    assert.match(
      refusal(parseWebviewMessage, { type: 'addImages', images: [{ name: 'a.png' }], refused: [] }),
      /images\[0\]\.dataBase64 is missing/,
    );
    assert.match(refusal(parseWebviewMessage, { type: 'addImages', images: [] }), /refused is missing/);
    // vscode.Uri.parse(uri, true) throws on these, out of the message handler.
    for (const uri of ['shot.png', '/home/me/shot.png', '1a:b', ':x']) {
      assert.match(
        refusal(parseWebviewMessage, { type: 'addUris', uris: ['file:///ok.png', uri] }),
        /uris\[1\] is ".*"; expected a URI with a scheme/,
        uri,
      );
    }
    assert.match(
      refusal(parseHostMessage, { type: 'replyText', turnId: 't', reply: 'answer', text: 3 }),
      /text is 3; expected a string/,
    );
    assert.match(
      refusal(parseHostMessage, { type: 'replyText', turnId: 't', reply: 'other', text: '' }),
      /reply is "other"/,
    );
    assert.match(
      refusal(parseHostMessage, { type: 'turnUpdated', turn: { ...TURN, answer: { text: '', status: 'thinking' } } }),
      /turn\.answer\.status is "thinking"/,
    );
    assert.match(
      refusal(parseHostMessage, {
        type: 'turnUpdated',
        turn: { ...TURN, answer: { text: '', status: 'waiting', progress: 40 } },
      }),
      /turn\.answer\.progress is 40; expected a string/,
    );
    // Seeds are 32-bit: a larger one was never drawn, and set as ficoco.seed it would be refused.
    for (const [seed, refused] of [
      [1.5, /turn\.answer\.stats\.seed is 1\.5; expected a whole number/],
      [4_294_967_296, /turn\.answer\.stats\.seed is 4294967296; expected a whole number from 0 to 4294967295\.$/],
    ] as const) {
      const badSeed = { ...STATS, seed };
      assert.match(
        refusal(parseHostMessage, { type: 'turnAdded', turn: { ...TURN, answer: { ...TURN.answer, stats: badSeed } } }),
        refused,
      );
    }
    const badStats = { ...STATS, visualTokens: [{ original: 144, atDecoder: -1 }] };
    assert.match(
      refusal(parseHostMessage, { type: 'turnAdded', turn: { ...TURN, answer: { ...TURN.answer, stats: badStats } } }),
      /turn\.answer\.stats\.visualTokens\[0\]\.atDecoder is -1/,
    );
    const badVerdict = { ...STATS, speedup: { ...STATS.speedup, verdict: 'great' } };
    assert.match(
      refusal(parseHostMessage, {
        type: 'turnAdded',
        turn: { ...TURN, answer: { ...TURN.answer, stats: badVerdict } },
      }),
      /stats\.speedup\.verdict is "great"; expected one of faster, same, slower/,
    );
    const badRule = { ...STATS, reduction: { ...STATS.reduction, rule: 'magic' } };
    assert.match(
      refusal(parseHostMessage, { type: 'turnAdded', turn: { ...TURN, answer: { ...TURN.answer, stats: badRule } } }),
      /stats\.reduction\.rule is "magic"/,
    );
    const outsideTiles = {
      ...STATS,
      imageReductions: [{ rows: 2, cols: 2, patches: 'kkkk', tileBorders: { rows: [2], cols: [] } }],
    };
    assert.match(
      refusal(parseHostMessage, {
        type: 'turnAdded',
        turn: { ...TURN, answer: { ...TURN.answer, stats: outsideTiles } },
      }),
      /tileBorders\.rows\[0\] must lie inside the 2-patch grid/,
    );
    // Each border is an element of the overlay: in order, at most one per cell edge.
    const repeatedBorders = {
      ...STATS,
      imageReductions: [{ rows: 3, cols: 3, patches: 'k'.repeat(9), tileBorders: { rows: [], cols: [1, 1] } }],
    };
    assert.match(
      refusal(parseHostMessage, {
        type: 'turnAdded',
        turn: { ...TURN, answer: { ...TURN.answer, stats: repeatedBorders } },
      }),
      /tileBorders\.cols\[1\] is 1; each border lies after the one before/,
    );
    const badOverlay = { ...STATS, imageReductions: [{ rows: 2, cols: 2, patches: 'kkx' }] };
    assert.match(
      refusal(parseHostMessage, {
        type: 'turnAdded',
        turn: { ...TURN, answer: { ...TURN.answer, stats: badOverlay } },
      }),
      /patches must be 4 of k, m or d/,
    );
  });

  test('image sources are only inlined images', () => {
    const withSrc = (src: string) => ({ type: 'turnAdded', turn: { ...TURN, images: [{ name: 'a.png', src }] } });
    assert.match(
      refusal(parseHostMessage, withSrc('javascript:alert(1)')),
      /turn\.images\[0\]\.src is not a data:image URL/,
    );
    assert.match(refusal(parseHostMessage, withSrc('https://example.com/a.png')), /src is not/);
    assert.match(refusal(parseHostMessage, withSrc('data:image/svg+xml;base64,PHN2Zz4=')), /src is not/);
  });
});

describe('conversation kept by the extension', () => {
  test('images wait for the next question, which takes them; each change returns its message', () => {
    const conversation = new Conversation();
    const added = conversation.addPending([image('a.png'), image('b.png')]);
    assert.ok(added.type === 'pending');
    assert.deepEqual(
      added.pending.map((image) => image.name),
      ['a.png', 'b.png'],
    );
    const removed = conversation.removePending(added.pending[0]!.id);
    assert.deepEqual(removed.type === 'pending' && removed.pending.map((image) => image.name), ['b.png']);
    const started = conversation.startTurn('what is it?');
    assert.ok(started);
    assert.deepEqual(
      started.inputs.map((input) => input.name),
      ['b.png'],
    );
    assert.deepEqual(
      started.messages.map((message) => message.type),
      ['turnAdded', 'pending'],
    );
    assert.deepEqual(conversation.appendText(started.turn.id, 'answer', 'a '), {
      type: 'replyText',
      turnId: started.turn.id,
      reply: 'answer',
      text: 'a ',
    });
    conversation.appendText(started.turn.id, 'answer', 'cat');
    const done = conversation.finish(started.turn.id, 'answer', 'stop-token', STATS);
    assert.ok(done?.type === 'turnUpdated');
    assert.deepEqual(done.turn.answer, { text: 'a cat', status: 'done', stopReason: 'stop-token', stats: STATS });
    const state = conversation.state();
    assert.deepEqual(parseHostMessage(state), state);
  });

  test('no image at all: no turn; a follow-up without new images asks about the last ones, with the history', () => {
    const conversation = new Conversation();
    assert.equal(conversation.startTurn('what is it?'), undefined);
    conversation.addPending([image('a.png')]);
    const first = conversation.startTurn('what is the title ?')!;
    conversation.appendText(first.turn.id, 'answer', 'maps');
    conversation.finish(first.turn.id, 'answer', 'stop-token');
    const second = conversation.startTurn('and the colour of box A ?')!;
    assert.deepEqual(
      second.inputs.map((input) => input.name),
      ['a.png'],
    );
    assert.deepEqual(
      second.messages.map((message) => message.type),
      ['turnAdded'],
    );
    assert.deepEqual(conversation.history(second.turn.id), [
      { role: 'user', text: 'what is the title ?' },
      { role: 'assistant', text: 'maps' },
    ]);
    assert.deepEqual(conversation.history(first.turn.id), []);
  });

  test('a failed or stopped answer stays in the transcript but not in the history', () => {
    const conversation = new Conversation();
    conversation.addPending([image('a.png')]);
    const first = conversation.startTurn('q1')!;
    conversation.fail(first.turn.id, 'answer', 'The engine process stopped unexpectedly.');
    const second = conversation.startTurn('q2')!;
    assert.deepEqual(conversation.history(second.turn.id), []);
    const state = conversation.state();
    assert.ok(state.type === 'state');
    assert.deepEqual(state.turns[0]!.answer, {
      text: '',
      status: 'error',
      error: 'The engine process stopped unexpectedly.',
    });
  });

  test('Compare opens a full-token reply beside the answer; the speedup joins the answer later', () => {
    const conversation = new Conversation();
    conversation.addPending([image('a.png')]);
    const { turn } = conversation.startTurn('q')!;
    conversation.finish(turn.id, 'answer', 'stop-token', { ...STATS, speedup: undefined });
    const opened = conversation.startFull(turn.id);
    assert.ok(opened?.type === 'turnUpdated');
    assert.deepEqual(opened.turn.full, { text: '', status: 'waiting' });
    assert.deepEqual(conversation.turnInputs(turn.id)?.question, 'q');
    conversation.appendText(turn.id, 'full', 'cat');
    conversation.finish(turn.id, 'full', 'stop-token');
    const sped = conversation.setSpeedup(turn.id, STATS.speedup!);
    assert.ok(sped?.type === 'turnUpdated');
    assert.equal(sped.turn.answer.stats?.speedup?.ratio, 3.1);
    assert.equal(sped.turn.full?.text, 'cat');
  });

  test('a reply keeps what the engine is doing until its first text, or until it ends', () => {
    const conversation = new Conversation();
    conversation.addPending([image('a.png')]);
    const { turn } = conversation.startTurn('q')!;
    assert.deepEqual(conversation.progress(turn.id, 'answer', 'Reading the image'), {
      type: 'replyProgress',
      turnId: turn.id,
      reply: 'answer',
      label: 'Reading the image',
    });
    assert.deepEqual(conversation.turn(turn.id)?.answer, {
      text: '',
      status: 'waiting',
      progress: 'Reading the image',
    });
    conversation.appendText(turn.id, 'answer', 'a');
    assert.deepEqual(conversation.turn(turn.id)?.answer, { text: 'a', status: 'streaming' });
    conversation.finish(turn.id, 'answer', 'stop-token');
    conversation.startFull(turn.id);
    conversation.progress(turn.id, 'full', 'Reading the prompt: 40 %');
    const failed = conversation.fail(turn.id, 'full', 'The engine process stopped unexpectedly.');
    assert.ok(failed?.type === 'turnUpdated');
    assert.deepEqual(failed.turn.full, {
      text: '',
      status: 'error',
      error: 'The engine process stopped unexpectedly.',
    });
  });

  test('a stop under way is kept with the reply until it ends', () => {
    const conversation = new Conversation();
    conversation.addPending([image('a.png')]);
    const { turn } = conversation.startTurn('q')!;
    const stopping = conversation.stopping(turn.id, 'answer');
    assert.ok(stopping?.type === 'turnUpdated');
    assert.deepEqual(stopping.turn.answer, { text: '', status: 'waiting', stopping: true });
    conversation.appendText(turn.id, 'answer', 'a');
    assert.deepEqual(conversation.turn(turn.id)?.answer, { text: 'a', status: 'streaming', stopping: true });
    const stopped = conversation.finish(turn.id, 'answer', 'cancelled');
    assert.ok(stopped?.type === 'turnUpdated');
    assert.deepEqual(stopped.turn.answer, { text: 'a', status: 'done', stopReason: 'cancelled' });
    conversation.startFull(turn.id);
    conversation.stopping(turn.id, 'full');
    const failed = conversation.fail(turn.id, 'full', 'The engine process stopped unexpectedly.');
    assert.ok(failed?.type === 'turnUpdated');
    assert.equal(failed.turn.full?.stopping, undefined);
  });

  test('at most MAX_IMAGES_PER_QUESTION images per question; New Chat clears everything', () => {
    const conversation = new Conversation();
    const many = Array.from({ length: MAX_IMAGES_PER_QUESTION + 1 }, (_, i) => image(`${i}.png`));
    assert.throws(() => conversation.addPending(many), /A question can carry 8 images/);
    conversation.addPending(many.slice(0, 2));
    conversation.startTurn('q');
    assert.deepEqual(conversation.clear(), { type: 'state', turns: [], pending: [] });
  });

  const SHAPES_PNG = path.join(__dirname, '..', 'fixtures', 'images', 'shapes.png');

  test('a refused image holds the next question back once, with why; an image taken after it lets the question go', () => {
    const conversation = new Conversation();
    const shot = { name: 'shot.png', dataBase64: readFileSync(SHAPES_PNG).toString('base64') };
    /** The message handing the question back, or undefined when it was asked. */
    const held = (question: string) => {
      const asked = conversation.ask(question);
      return 'held' in asked ? asked.held : undefined;
    };
    assert.equal(held('before any image?')?.message, 'Paste, drop or attach an image first, then ask about it.');
    conversation.addImages([shot]);
    assert.equal(held('first?'), undefined);
    const text = { name: 'notes.png', dataBase64: Buffer.from('not a picture').toString('base64') };
    assert.deepEqual(
      conversation.addImages([text]).map((message) => message.type),
      ['notice'],
    );
    // A page that loads now (the Explorer revealing a hidden chat) shows the refusal with the state.
    const reloaded = conversation.state();
    assert.match(reloaded.type === 'state' ? (reloaded.notice ?? '') : '', /^notes\.png is not an image/);
    const second = held('second?');
    assert.equal(second?.question, 'second?');
    assert.match(
      second?.message ?? '',
      /^notes\.png is not an image.* The question was not sent: attach another image/,
    );
    assert.equal(held('second?'), undefined, 'sent again, it is asked');
    assert.equal('notice' in conversation.state(), false, 'the held question said it; a reload does not again');
    // A batch with a file turned away before reading holds the question, though its other image was taken.
    assert.deepEqual(
      conversation.addImages([shot], ['a.heic is not an image FiCoCo can read.']).map((message) => message.type),
      ['notice', 'pending'],
    );
    assert.ok(held('third?'));
    conversation.addImages([], ['b.heic is not an image FiCoCo can read.']);
    conversation.addImages([shot]);
    assert.equal(held('fourth?'), undefined, 'an image taken whole after the refusal');
    const many = conversation.addImages(Array.from({ length: MAX_IMAGES_PER_QUESTION + 1 }, () => shot));
    assert.ok(many[0]?.type === 'notice' && /A question can carry 8 images/.test(many[0].message));
    assert.ok(held('fifth?'));
    conversation.addImages([text]);
    conversation.clear();
    assert.equal(held('after New Chat')?.message, 'Paste, drop or attach an image first, then ask about it.');
  });

  test('sent state is a copy: later changes do not alter it', () => {
    const conversation = new Conversation();
    conversation.addPending([image('a.png')]);
    const { turn } = conversation.startTurn('q')!;
    const before = conversation.state();
    conversation.appendText(turn.id, 'answer', 'later');
    assert.equal(before.type === 'state' && before.turns[0]?.answer.text, '');
  });

  test(
    'images are inlined as data URLs up to a size, with the MIME type of the format their header says ' +
      '(not their name)',
    () => {
      assert.deepEqual(turnImage({ name: 'Shot.PNG', dataBase64: 'AQID', format: 'png' }), {
        name: 'Shot.PNG',
        src: 'data:image/png;base64,AQID',
      });
      assert.equal(
        turnImage({ name: 'photo.png', dataBase64: 'AQ==', format: 'jpeg' }).src,
        'data:image/jpeg;base64,AQ==',
      );
      const big = Buffer.alloc(MAX_PREVIEW_BYTES + 1).toString('base64');
      assert.deepEqual(turnImage({ name: 'big.png', dataBase64: big, format: 'png' }), { name: 'big.png' });
      assert.ok(
        turnImage({ name: 'edge.png', dataBase64: Buffer.alloc(MAX_PREVIEW_BYTES).toString('base64'), format: 'png' })
          .src,
      );
    },
  );
});

describe('webview page', () => {
  const page = {
    cspSource: 'https://webview.test',
    scriptUri: 'https://webview.test/dist/webview.js',
    styleUri: 'https://webview.test/dist/webview.css',
    title: 'FiCoCo',
  };

  test('a strict CSP whose nonce is the script tag’s', () => {
    const html = webviewHtml(page, 'abc123');
    assert.match(
      html,
      /content="default-src 'none'; img-src https:\/\/webview.test data:; style-src https:\/\/webview.test; script-src 'nonce-abc123'; font-src https:\/\/webview.test"/,
    );
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
