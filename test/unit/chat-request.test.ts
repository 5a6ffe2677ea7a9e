/**
 * `ficoco serve`'s reading of a chat request's images: data: URLs of images in base64, read in time linear in their
 * length, counted before any is decoded.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import {
  BadChatRequest,
  type ChatCompletionBody,
  IMAGE_ALONE_QUESTION,
  chatQuestion,
} from '../../src/server/chatRequest';

const PNG = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'images', 'shapes.png')).toString('base64');
const DEFAULTS = { reduction: undefined, maxTokens: 16 };

const askWith = (...urls: string[]) =>
  chatQuestion(
    {
      model: 'm',
      messages: [
        {
          role: 'user',
          content: [
            ...urls.map((url) => ({ type: 'image_url' as const, image_url: { url } })),
            { type: 'text' as const, text: 'what is it ?' },
          ],
        },
      ],
    } as ChatCompletionBody,
    DEFAULTS,
  );

const refused = (pattern: RegExp) => (error: unknown) =>
  error instanceof BadChatRequest && error.param === 'messages[0].content[0].image_url' && pattern.test(error.message);

describe('images in a chat request', () => {
  test('a base64 image, with or without media type parameters, goes to the engine as sent', () => {
    for (const url of [`data:image/png;base64,${PNG}`, `data:IMAGE/PNG;name=shot.png;BASE64,${PNG}`]) {
      const [image] = askWith(url).ask.images;
      assert.deepEqual(image, { name: 'message-0-part-0.png', dataBase64: PNG });
    }
  });

  test('base64 without its padding is taken, padded; a length no base64 has is refused', () => {
    // tall.png's length leaves two bytes over a multiple of three: one '=' of padding.
    const padded = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'images', 'tall.png')).toString('base64');
    assert.ok(padded.endsWith('=') && !padded.endsWith('=='));
    assert.equal(askWith(`data:image/png;base64,${padded.slice(0, -1)}`).ask.images[0].dataBase64, padded);
    assert.throws(() => askWith(`data:image/png;base64,${PNG}A`), refused(/not base64/));
  });

  test('what is not a base64 image data: URL is refused, naming the part', () => {
    assert.throws(() => askWith(`image/png;base64,${PNG}`), refused(/is not a data: URL/));
    assert.throws(() => askWith('data:text/plain;base64,aGk='), refused(/is text\/plain, not an image/));
    assert.throws(() => askWith('data:,hello'), refused(/is text\/plain, not an image/));
    assert.throws(() => askWith('data:image/png,%89PNG'), refused(/is not base64-encoded/));
    assert.throws(() => askWith(`data:image/png;base64,${PNG.slice(0, 40)}*${PNG.slice(40)}`), refused(/not base64/));
  });

  test('a hostile header costs what its length does', { timeout: 20_000 }, () => {
    // A general data-URL parser's header pattern took 12 s on 128,000 characters here, quadratic in them.
    assert.throws(() => askWith(`data:image/png;${'a'.repeat(2_000_000)},x`), refused(/is not a data: URL/));
    assert.throws(() => askWith(`data:image/png;base64,${'A'.repeat(2_000_000)}!`), refused(/not base64/));
  });

  test('an image with no words asks the stated question; words or no image are taken as sent', () => {
    const questionOf = (content: ChatCompletionBody['messages'][number]['content']) =>
      chatQuestion({ model: 'm', messages: [{ role: 'user', content }] } as ChatCompletionBody, DEFAULTS).ask.question;
    const image = { type: 'image_url' as const, image_url: { url: `data:image/png;base64,${PNG}` } };
    assert.equal(questionOf([image]), IMAGE_ALONE_QUESTION);
    assert.equal(questionOf([image, { type: 'text', text: ' \n' }]), IMAGE_ALONE_QUESTION);
    assert.equal(questionOf([image, { type: 'text', text: 'what is it ?' }]), 'what is it ?');
    // Without an image there is nothing to describe: the engine's own refusal of an empty question stands.
    assert.equal(questionOf([{ type: 'text', text: '' }]), '');
    assert.equal(questionOf(''), '');
  });

  test('more images than a question takes are refused before any is decoded', () => {
    assert.throws(
      () => askWith(...Array.from({ length: 9 }, () => 'not even a data URL')),
      (error: unknown) =>
        error instanceof BadChatRequest && /carries 9 images; FiCoCo takes at most 8/.test(error.message),
    );
  });
});

describe('sampling in a chat request', () => {
  const ask = (fields: Partial<ChatCompletionBody>) =>
    chatQuestion({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...fields } as ChatCompletionBody, DEFAULTS)
      .ask;

  test('greedy unless a temperature is given; a seed given is kept, as an unsigned 32-bit integer', () => {
    assert.equal(ask({}).temperature, 0);
    assert.equal(ask({ temperature: 0.8, seed: 7 }).seed, 7);
    assert.equal(ask({ temperature: 0.8, seed: -1 }).seed, 2 ** 32 - 1);
  });

  test('without a seed, each sampled answer draws its own, so asking again (Regenerate) can answer otherwise', () => {
    const seeds = new Set(Array.from({ length: 8 }, () => ask({ temperature: 0.8 }).seed));
    assert.ok(seeds.size > 1, `every request got the seed ${[...seeds].join(', ')}`);
    for (const seed of seeds) assert.ok(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32);
    const nullSeeds = new Set(Array.from({ length: 8 }, () => ask({ temperature: 0.8, seed: null }).seed));
    assert.ok(nullSeeds.size > 1, 'seed: null is no seed');
  });

  test("top_k, min_p and repetition_penalty, as vLLM's and llama.cpp's clients send them, reach the engine", () => {
    const sampled = ask({ temperature: 1, top_k: 1, min_p: 0.05, repetition_penalty: 1.3 });
    assert.deepEqual([sampled.topK, sampled.minP, sampled.repetitionPenalty], [1, 0.05, 1.3]);
    const plain = ask({ temperature: 1, top_k: null, min_p: null, repetition_penalty: null });
    assert.deepEqual([plain.topK, plain.minP, plain.repetitionPenalty], [undefined, undefined, undefined]);
  });
});

describe('the reduction in a chat request', () => {
  const ask = (ficoco: ChatCompletionBody['ficoco']) =>
    chatQuestion({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ficoco } as ChatCompletionBody, DEFAULTS);

  test('a method that does not exist is named as such, with or without a budget, not asked for a budget', () => {
    for (const ficoco of [{ method: 'ficoco_v' }, { method: 'ficoco_v', budget: '11%' }])
      assert.throws(
        () => ask(ficoco),
        (error: unknown) =>
          error instanceof FicocoError &&
          error.kind === 'reduction' &&
          /^Unknown reduction method "ficoco_v"; did you mean "ficoco-v"\?$/.test(error.message),
      );
    assert.deepEqual(ask({ method: 'ficoco-v', budget: 16 }).ask.reduction, {
      method: 'ficoco-v',
      budget: { tokens: 16 },
      params: {},
    });
  });
});
