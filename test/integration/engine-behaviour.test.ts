import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LlavaEngine } from '../../src/engine/engine';
import { FicocoError } from '../../src/common/errors';
import type { PrefillProgress } from '../../src/common/prefillProgress';
import { SLOT_BLOCK } from '../../src/engine/runtime/kvCache';
import type { SamplingOptions } from '../../src/engine/runtime/sampling';
import { maxAbsDiff } from '../helpers/assertions';
import { runCli } from '../helpers/cli';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const MODEL = path.join(FIXTURES, 'tiny-llava-llama');
const SHAPES = { bytes: fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')), name: 'shapes.png' };
const QUESTION = 'what colour is the big box ?';

/** Copies the fixture model into a temp folder so a test can damage it. */
function copyOfModel(): string {
  const dir = temporaryFolder('ficoco-model-');
  for (const file of fs.readdirSync(MODEL).filter((name) => !name.startsWith('reference.')))
    fs.copyFileSync(path.join(MODEL, file), path.join(dir, file));
  return dir;
}

async function loadError(dir: string): Promise<FicocoError> {
  try {
    await LlavaEngine.load(dir);
  } catch (error) {
    assert.ok(error instanceof FicocoError, `expected a FicocoError, got ${String(error)}`);
    return error;
  }
  assert.fail('the model loaded');
}

describe('model folders that cannot be used get one clear error', () => {
  test('a path that is not a folder', async () => {
    const error = await loadError(path.join(FIXTURES, 'images', 'shapes.png'));
    assert.equal(error.kind, 'model-folder');
    assert.match(error.message, /shapes\.png is not a folder/);
  });

  test('a folder without config.json', async () => {
    const error = await loadError(path.join(FIXTURES, 'images'));
    assert.equal(error.kind, 'model-folder');
    assert.match(error.message, /config\.json is missing/);
  });

  test('a config for an architecture the engine does not support', async () => {
    const dir = copyOfModel();
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'qwen2_vl' }));
    const error = await loadError(dir);
    assert.equal(error.kind, 'config');
    assert.match(error.message, /model_type is "qwen2_vl"/);
  });

  test('an unsupported decoder names the field', async () => {
    const dir = copyOfModel();
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ ...config, text_config: { ...config.text_config, model_type: 'gemma' } }),
    );
    const error = await loadError(dir);
    assert.match(error.message, /text_config\.model_type is "gemma"/);
  });

  test('a config whose sizes do not match the weights', async () => {
    const dir = copyOfModel();
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ ...config, text_config: { ...config.text_config, intermediate_size: 100 } }),
    );
    const error = await loadError(dir);
    assert.equal(error.kind, 'weights');
    assert.match(error.message, /gate_proj\.weight has shape \[96, 48\] but config\.json implies \[100, 48\]/);
  });

  for (const [what, settings, made] of [
    [
      'a centre crop smaller than',
      { crop_size: { height: 40, width: 40 } },
      /turns a 48 × 48 image into 40 × 40 pixels/,
    ],
    [
      'no centre crop after a resize by the shortest edge to',
      { do_center_crop: false },
      /turns a 144 × 48 image into 144 × 48 pixels/,
    ],
  ] as const)
    test(`image settings that give images another size than the tower's: ${what} its image_size`, async () => {
      const dir = copyOfModel();
      const file = path.join(dir, 'preprocessor_config.json');
      fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), ...settings }));
      const error = await loadError(dir);
      assert.equal(error.kind, 'config');
      assert.match(error.message, made);
      assert.match(error.message, /the vision tower reads 48 × 48 \(image_size in config\.json\)/);
    });

  test('a missing safetensors file', async () => {
    const dir = copyOfModel();
    fs.rmSync(path.join(dir, 'model.safetensors'));
    const error = await loadError(dir);
    assert.match(error.message, /no \.safetensors weights/);
  });

  test('a truncated safetensors file', async () => {
    const dir = copyOfModel();
    const file = path.join(dir, 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 1000);
    const error = await loadError(dir);
    assert.equal(error.kind, 'weights');
    assert.match(error.message, /model\.safetensors is .* shorter than its header says/);
  });
});

describe('a loaded engine', () => {
  let engine: LlavaEngine;
  before(async () => {
    engine = await LlavaEngine.load(MODEL);
  });
  after(() => engine.dispose());

  test('answers, streams text and reports stats', async () => {
    const pieces: string[] = [];
    const answer = await engine.ask({
      question: QUESTION,
      images: [SHAPES],
      maxNewTokens: 6,
      onText: (text) => pieces.push(text),
    });
    assert.ok(answer.tokenIds.length >= 1 && answer.tokenIds.length <= 6);
    assert.equal(pieces.join('').trim(), answer.text.trim());
    const { stats } = answer;
    assert.equal(stats.provider, 'cpu');
    assert.equal(stats.generatedTokens, answer.tokenIds.length);
    assert.deepEqual(stats.visualTokens, [{ original: 36, atDecoder: 36 }]);
    assert.equal(stats.promptTokens, 12 + 36);
    for (const ms of [stats.preprocessMs, stats.visionMs, stats.prefillMs, stats.ttftMs]) assert.ok(ms > 0);
    assert.ok(stats.ttftMs >= stats.visionMs + stats.prefillMs);
  });

  test('an empty question is refused and the engine stays usable', async () => {
    await assert.rejects(
      engine.ask({ question: '  ', images: [SHAPES] }),
      (error: unknown) =>
        error instanceof FicocoError && error.kind === 'input' && /question is empty/.test(error.message),
    );
    const answer = await engine.ask({ question: QUESTION, images: [SHAPES], maxNewTokens: 2 });
    assert.ok(answer.tokenIds.length > 0);
  });

  test('a token limit that is not a whole number, or a sampling setting out of its range, is refused', async () => {
    const refused = (field: string) => (error: unknown) =>
      error instanceof FicocoError && error.kind === 'input' && error.message.startsWith(`${field} is `);
    for (const maxNewTokens of [2.5, -1, NaN])
      await assert.rejects(engine.ask({ question: QUESTION, images: [SHAPES], maxNewTokens }), refused('maxNewTokens'));
    const sampled = (sampling: SamplingOptions) =>
      engine.ask({ question: QUESTION, images: [SHAPES], maxNewTokens: 2, sampling });
    await assert.rejects(sampled({ temperature: NaN, topP: 1, seed: 1 }), refused('sampling.temperature'));
    await assert.rejects(sampled({ temperature: Infinity, topP: 1, seed: 1 }), refused('sampling.temperature'));
    await assert.rejects(sampled({ temperature: -1, topP: 1, seed: 1 }), refused('sampling.temperature'));
    await assert.rejects(sampled({ temperature: 1, topP: NaN, seed: 1 }), refused('sampling.topP'));
    await assert.rejects(sampled({ temperature: 1, topP: 1.5, seed: 1 }), refused('sampling.topP'));
    await assert.rejects(sampled({ temperature: 1, topP: 1, seed: NaN }), refused('sampling.seed'));
    for (const topK of [-1, 2.5, NaN])
      await assert.rejects(sampled({ temperature: 1, topP: 1, seed: 1, topK }), refused('sampling.topK'));
    for (const minP of [-0.1, 1.5, NaN])
      await assert.rejects(sampled({ temperature: 1, topP: 1, seed: 1, minP }), refused('sampling.minP'));
    for (const repetitionPenalty of [0, -1, Infinity, NaN])
      await assert.rejects(
        sampled({ temperature: 0, topP: 1, seed: 1, repetitionPenalty }),
        refused('sampling.repetitionPenalty'),
      );
    assert.equal((await engine.ask({ question: QUESTION, images: [SHAPES], maxNewTokens: 0 })).tokenIds.length, 0);
    assert.ok((await sampled({ temperature: 0.7, topP: 0.9, seed: 3 })).tokenIds.length > 0);
    const every = { temperature: 0.7, topP: 0.9, seed: 3, topK: 5, minP: 0.05, repetitionPenalty: 1.2 };
    assert.ok((await sampled(every)).tokenIds.length > 0);
  });

  test('an image that cannot be decoded names the file and the engine stays usable', async () => {
    const corrupt = { bytes: SHAPES.bytes.subarray(0, 200), name: 'broken.png' };
    await assert.rejects(
      engine.ask({ question: QUESTION, images: [corrupt] }),
      (error: unknown) => error instanceof FicocoError && error.kind === 'image' && /broken\.png/.test(error.message),
    );
    const text = { bytes: new TextEncoder().encode('not an image'), name: 'notes.txt' };
    await assert.rejects(engine.ask({ question: QUESTION, images: [text] }), /notes\.txt is not an image/);
    const answer = await engine.ask({ question: QUESTION, images: [SHAPES], maxNewTokens: 2 });
    assert.ok(answer.tokenIds.length > 0);
  });

  test('more images than placeholders is an input error', async () => {
    const pixels = await engine.pixelValues(SHAPES.bytes, SHAPES.name);
    const ids = engine.text.encode(
      await engine.text.renderPrompt([
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] },
      ]),
    );
    await assert.rejects(
      engine.generate(ids, [pixels, pixels], { maxNewTokens: 1 }),
      /1 image placeholder\(s\) but 2 image\(s\)/,
    );
  });

  test('stops at max new tokens, at a stop token, and when cancelled between steps', async () => {
    const pixels = await engine.pixelValues(SHAPES.bytes, SHAPES.name);
    const ids = engine.text.encode(
      await engine.text.renderPrompt([
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] },
      ]),
    );
    const free = await engine.generate(ids, [pixels], { maxNewTokens: 5, stopTokenIds: [] });
    assert.equal(free.stopReason, 'max-tokens');
    assert.equal(free.tokenIds.length, 5);
    const { visionCpuMs, prefillCpuMs } = free.timings;
    assert.ok(
      visionCpuMs > 0 && prefillCpuMs > 0,
      `the vision tower and the prefill did work: ${visionCpuMs} and ${prefillCpuMs} CPU ms`,
    );

    const stopped = await engine.generate(ids, [pixels], { maxNewTokens: 5, stopTokenIds: [free.tokenIds[2]] });
    assert.equal(stopped.stopReason, 'stop-token');
    assert.deepEqual(stopped.tokenIds, free.tokenIds.slice(0, free.tokenIds.indexOf(free.tokenIds[2]) + 1));

    const controller = new AbortController();
    const seen: number[] = [];
    const cancelled = await engine.generate(ids, [pixels], {
      maxNewTokens: 5,
      stopTokenIds: [],
      signal: controller.signal,
      onToken: (id) => {
        seen.push(id);
        if (seen.length === 2) controller.abort();
      },
    });
    assert.equal(cancelled.stopReason, 'cancelled');
    assert.deepEqual(cancelled.tokenIds, free.tokenIds.slice(0, 2));
  });

  test("a cancelled answer's decode time is that of its tokens, not of the step run after the last", async () => {
    const pixels = await engine.pixelValues(SHAPES.bytes, SHAPES.name);
    const ids = engine.text.encode(
      await engine.text.renderPrompt([
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] },
      ]),
    );
    const controller = new AbortController();
    let seen = 0;
    const cancelled = await engine.generate(ids, [pixels], {
      maxNewTokens: 5,
      stopTokenIds: [],
      signal: controller.signal,
      onToken: () => {
        if (++seen < 2) return;
        controller.abort();
        // Whatever follows the last token (here a busy listener) is no part of decoding it.
        const until = performance.now() + 300;
        while (performance.now() < until);
      },
    });
    assert.equal(cancelled.stopReason, 'cancelled');
    assert.equal(cancelled.tokenIds.length, 2);
    assert.ok(cancelled.timings.decodeMs < 150, `one decode step took ${cancelled.timings.decodeMs} ms`);
  });

  test('a cache that grows by a block of slots mid-answer or mid-prompt gives the tokens and logits of one prefill', async () => {
    const pixels = await engine.pixelValues(SHAPES.bytes, SHAPES.name);
    const promptIds = async (question: string) =>
      engine.text.encode(
        await engine.text.renderPrompt([
          { role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] },
        ]),
      );
    let question = QUESTION;
    let ids = await promptIds(question);
    // The prompt ends a few tokens before the first block of slots fills, so the answer's steps cross it.
    while ((await engine.generate(ids, [pixels], { maxNewTokens: 1 })).promptTokens < SLOT_BLOCK - 4)
      ids = await promptIds((question += ' and the box'));
    const answer = await engine.generate(ids, [pixels], { maxNewTokens: 10, stopTokenIds: [] });
    assert.ok(answer.promptTokens < SLOT_BLOCK && answer.promptTokens + 10 > SLOT_BLOCK);
    for (const k of [3, 6, 9]) {
      const replay = await engine.generate([...ids, ...answer.tokenIds.slice(0, k)], [pixels], {
        maxNewTokens: 1,
        stopTokenIds: [],
      });
      assert.equal(replay.tokenIds[0], answer.tokenIds[k], `token ${k} after ${answer.promptTokens + k} in the cache`);
    }
    const whole = [...ids, ...answer.tokenIds];
    const chunked = await LlavaEngine.load(MODEL, { prefillChunkTokens: 100 });
    try {
      const inChunks = await chunked.generate(whole, [pixels], { maxNewTokens: 3, stopTokenIds: [] });
      const atOnce = await engine.generate(whole, [pixels], { maxNewTokens: 3, stopTokenIds: [] });
      assert.ok(maxAbsDiff(inChunks.prefillLogits, atOnce.prefillLogits) < 1e-4);
      assert.deepEqual(inChunks.tokenIds, atOnce.tokenIds);
    } finally {
      await chunked.dispose();
    }
  });

  test('sampling is reproducible from its seed and differs from greedy at high temperature', async () => {
    const pixels = await engine.pixelValues(SHAPES.bytes, SHAPES.name);
    const ids = engine.text.encode(
      await engine.text.renderPrompt([
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] },
      ]),
    );
    const sample = (seed: number, temperature: number, topP: number) =>
      engine.generate(ids, [pixels], { maxNewTokens: 8, stopTokenIds: [], sampling: { temperature, topP, seed } });
    const greedy = await engine.generate(ids, [pixels], { maxNewTokens: 8, stopTokenIds: [] });
    assert.deepEqual((await sample(7, 5, 1)).tokenIds, (await sample(7, 5, 1)).tokenIds);
    assert.notDeepEqual((await sample(7, 5, 1)).tokenIds, greedy.tokenIds);
    // A nucleus too small for a second token is greedy decoding.
    assert.deepEqual((await sample(7, 1, 1e-9)).tokenIds, greedy.tokenIds);
  });
});

test("after warming up, a large model's first image pass is foretold: the pace of a question without an image", async () => {
  // Every fixture is small; a threshold of 0 FLOPs warms it up as a large model is: sessions, then one text question.
  const firstReport = async (warmUp: boolean) => {
    const engine = await LlavaEngine.load(MODEL, { threads: 1, warmUpRepeatsBelowFlops: 0 });
    try {
      if (warmUp) await engine.warmUp();
      const reports: PrefillProgress[] = [];
      await engine.ask({ question: QUESTION, images: [SHAPES], maxNewTokens: 1, onProgress: (p) => reports.push(p) });
      return reports[0];
    } finally {
      await engine.dispose();
    }
  };
  assert.deepEqual(await firstReport(false), { stage: 'image', done: 0, total: 1 }, 'nothing had run yet');
  const warmed = await firstReport(true);
  assert.equal(warmed.stage, 'image');
  assert.ok(typeof warmed.nextRunMs === 'number' && warmed.nextRunMs >= 0, JSON.stringify(warmed));
});

test('disposing an engine stops its questions in flight as cancelled, then refuses new ones', async () => {
  const cancelled = (pattern: RegExp) => (error: unknown) =>
    error instanceof FicocoError && error.kind === 'cancelled' && pattern.test(error.message);
  const engine = await LlavaEngine.load(MODEL);
  const pixels = await engine.pixelValues(SHAPES.bytes, SHAPES.name);
  const ids = engine.text.encode(
    await engine.text.renderPrompt([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] }]),
  );
  let disposed: Promise<void> | undefined;
  // Mid-answer: the tokens so far come back, as after Stop, and the sessions go once the answer has ended.
  const answering = await engine.generate(ids, [pixels], {
    maxNewTokens: 40,
    stopTokenIds: [],
    onToken: () => (disposed ??= engine.dispose()),
  });
  await disposed;
  assert.equal(answering.stopReason, 'cancelled');
  assert.equal(answering.tokenIds.length, 1);
  // A question still rendering its prompt, and one asked after: neither blames the model folder or ONNX Runtime.
  const again = await LlavaEngine.load(MODEL);
  const asked = [1, 2].map(() =>
    assert.rejects(again.ask({ question: QUESTION, images: [SHAPES], maxNewTokens: 4 }), cancelled(/disposed/)),
  );
  await again.dispose();
  await Promise.all(asked);
  await assert.rejects(again.ask({ question: QUESTION, images: [SHAPES] }), cancelled(/disposed/));
  await assert.rejects(again.warmUp(), cancelled(/disposed/));
});

describe('execution providers', () => {
  test('a provider that cannot load falls back to CPU and says why', async () => {
    const requested = process.platform === 'win32' ? 'coreml' : 'dml';
    const engine = await LlavaEngine.load(MODEL, { provider: requested });
    try {
      assert.equal(engine.provider, 'cpu');
      assert.match(
        engine.providerFallback ?? '',
        new RegExp(`${requested} could not be used .*running on CPU instead`),
      );
      const answer = await engine.ask({ question: QUESTION, images: [SHAPES], maxNewTokens: 2 });
      assert.equal(answer.stats.provider, 'cpu');
      assert.match(answer.stats.providerFallback ?? '', /running on CPU/);
    } finally {
      await engine.dispose();
    }
  });

  test("ficoco ask --provider cuda where CUDA cannot load says why once, without ONNX Runtime's own log line", async (t) => {
    const image = path.join(FIXTURES, 'images', 'shapes.png');
    const { stdout, stderr } = await runCli(['ask', '--model', MODEL, '--image', image, '--provider', 'cuda', 'q']);
    const providerLine = /^provider +(.*)$/m.exec(stdout)?.[1] ?? '';
    if (!/running on CPU instead/.test(providerLine)) return t.skip('needs a machine where the CUDA provider fails');
    assert.match(providerLine, /^cpu \(cuda could not be used \(.+\), running on CPU instead\)$/);
    assert.doesNotMatch(stderr, /onnxruntime/i, 'the reason is said once, in the stats, not again by ORT');
  });

  test('when the provider asked for cannot load, weights are quantized for the CPU that runs them', async () => {
    const requested = process.platform === 'win32' ? 'coreml' : 'dml';
    const copy = temporaryFolder('ficoco-fallback-int8-');
    for (const file of fs.readdirSync(MODEL)) fs.copyFileSync(path.join(MODEL, file), path.join(copy, file));
    const engine = await LlavaEngine.load(copy, { provider: requested, quantization: 'int8' });
    try {
      assert.equal(engine.provider, 'cpu');
      // A GPU provider's layout would be "int8 (decoder)": no integer products, the tower as stored.
      assert.equal(engine.quantizedWeights, 'int8 (decoder and vision tower)');
      assert.equal(engine.providerFallback?.match(/could not be used/g)?.length, 1, engine.providerFallback);
    } finally {
      await engine.dispose();
    }
  });
});
