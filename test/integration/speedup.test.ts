import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { AskOptions, EngineClient, EngineError } from '../../src/client/engineClient';
import {
  PairPlan,
  PrefillRun,
  SpeedupCache,
  SpeedupSubject,
  measureSpeedup,
  prefillMs,
  speedupView,
} from '../../src/extension/speedup';
import { LoadParams, loadKey } from '../../src/protocol/engine';

const ROOT = path.join(__dirname, '..', '..');
const HOST = path.join(ROOT, 'src', 'host', 'main.ts');
const MODEL = path.join(ROOT, 'test', 'fixtures', 'tiny-llava-llama');
const LOAD: LoadParams = { modelDir: MODEL, provider: 'cpu', threads: 1 };
const IMAGE = {
  name: 'shapes.png',
  dataBase64: fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'images', 'shapes.png')).toString('base64'),
};
const PREFILL_ONLY: AskOptions = {
  question: 'what is in the picture ?',
  images: [IMAGE],
  maxNewTokens: 1,
  temperature: 0,
  topP: 1,
  seed: 0,
};
const REDUCTION = { method: 'ficoco-v', budget: { tokens: 12 }, params: {} };
const QUICK: PairPlan = { minPairs: 3, maxPairs: 5, targetMs: 200, warmPairCountsFromMs: 1000 };

/** A run that takes `full` ms unreduced and `reduced` ms reduced, one after the other from the lists, and logs the order. */
function scriptedRun(full: number[], reduced: number[], order: boolean[] = []): PrefillRun {
  return async (isReduced) => {
    order.push(isReduced);
    return (isReduced ? reduced : full).shift();
  };
}

describe('speedup figures', () => {
  test('the median of paired ratios, the middle half as the band, and a verdict past the noise', () => {
    const faster = speedupView([1.7, 1.9, 1.8, 2.0, 1.6], 'prefill');
    assert.equal(faster.ratio, 1.8);
    assert.equal(faster.low, 1.7);
    assert.equal(faster.high, 1.9);
    assert.equal(faster.pairs, 5);
    assert.equal(faster.verdict, 'faster');
    assert.equal(faster.label, '1.8× faster');
  });

  test('a ratio below 1 is never worded as a speedup', () => {
    const slower = speedupView([0.3, 0.35, 0.28, 0.32, 0.31], 'prefill');
    assert.equal(slower.verdict, 'slower');
    assert.equal(slower.label, '0.3× — slower than full tokens on this model');
    assert.doesNotMatch(slower.label, /faster/);
  });

  test('within 5 % of 1×, or with pairs that could have gone either way, the answer is "no faster"', () => {
    assert.equal(speedupView([1.02, 1.03, 0.99, 1.04, 1.01], 'prefill').verdict, 'same');
    const straddling = speedupView([0.8, 1.3, 1.1, 0.9, 1.25], 'prefill');
    assert.equal(straddling.ratio, 1.1);
    assert.equal(straddling.verdict, 'same', 'a median of 1.1× from 3 pairs won of 5 is noise');
    assert.equal(straddling.label, '≈1× — no faster than full tokens on this model');
    assert.equal(speedupView([1.5, 1.6, 1.4], 'prefill').verdict, 'same', 'three pairs cannot tell luck from speed');
  });

  test('many pairs mostly won make a figure, even when a quarter of them were noisy', () => {
    const noisy = speedupView([...Array<number>(16).fill(0.9), ...Array<number>(45).fill(1.3)], 'prefill');
    assert.ok(noisy.low < 1, 'the band grazes 1×');
    assert.equal(noisy.verdict, 'faster', '45 of 61 pairs won is no luck (sign test)');
    assert.equal(noisy.label, '1.3× faster');
  });

  test('after one discarded warm-up run of each side, pairs alternate which side runs first, each one told', async () => {
    const order: boolean[] = [];
    const told: string[] = [];
    const speedup = await measureSpeedup(
      scriptedRun([90, 10, 10, 10], [50, 5, 5, 5], order),
      'prefill',
      QUICK,
      (done, pairs) => told.push(`${done}/${pairs} after ${order.length} runs`),
    );
    assert.deepEqual(order, [false, true, false, true, true, false, false, true]);
    assert.deepEqual(told, ['0/3 after 2 runs', '1/3 after 4 runs', '2/3 after 6 runs', '3/3 after 8 runs']);
    assert.equal(speedup?.ratio, 2, 'the slow warm-up runs are not counted');
    assert.equal(speedup?.pairs, 3);
  });

  test('a warm-up pair of long runs counts as the first pair: the first runs compile a small share of them', async () => {
    const order: boolean[] = [];
    const told: string[] = [];
    const speedup = await measureSpeedup(
      scriptedRun([3000, 2400, 2400], [1000, 800, 800], order),
      'prefill',
      QUICK,
      (done, pairs) => told.push(`${done}/${pairs} after ${order.length} runs`),
    );
    assert.deepEqual(order, [false, true, true, false, false, true]);
    assert.deepEqual(told, ['1/3 after 2 runs', '2/3 after 4 runs', '3/3 after 6 runs']);
    assert.equal(speedup?.ratio, 3);
    assert.equal(speedup?.pairs, 3);
  });

  test('as many pairs as fit the target time, within the plan', async () => {
    const many = await measureSpeedup(scriptedRun(Array(20).fill(10), Array(20).fill(5)), 'prefill', {
      ...QUICK,
      maxPairs: 8,
      targetMs: 1000,
    });
    assert.equal(many?.pairs, 8, 'fast runs: as many as the plan allows');
    const few = await measureSpeedup(scriptedRun(Array(20).fill(900), Array(20).fill(600)), 'prefill', QUICK);
    assert.equal(few?.pairs, 3, 'slow runs: the minimum');
  });

  test('the cache keys everything a figure depends on, and the extension version', async () => {
    const values = new Map<string, unknown>();
    const store = {
      get: <T>(key: string) => values.get(key) as T | undefined,
      update: async (key: string, value: unknown) => void values.set(key, value),
    };
    const subject: SpeedupSubject = {
      engine: loadKey({ modelDir: '/m', provider: 'cpu' }),
      provider: 'cpu',
      images: { visualTokens: [576], visionFlops: 3.5e11 },
      reduction: { method: 'tome', budget: '64', params: { b: 1, a: 2 } },
    };
    const cache = new SpeedupCache(store, '1.0.0');
    await cache.set(subject, speedupView([2], 'prefill'));
    assert.equal(cache.get(subject)?.ratio, 2);
    assert.equal(cache.get({ ...subject, reduction: { ...subject.reduction, params: { a: 2, b: 1 } } })?.ratio, 2);
    for (const other of [
      { ...subject, provider: 'cuda' },
      { ...subject, images: { visualTokens: [577], visionFlops: 3.5e11 } },
      { ...subject, images: { visualTokens: [576], visionFlops: 7e11 } },
      { ...subject, images: { visualTokens: [576, 576], visionFlops: 7e11 } },
      { ...subject, reduction: { ...subject.reduction, budget: '32' } },
      { ...subject, reduction: { ...subject.reduction, params: { a: 3, b: 1 } } },
      { ...subject, engine: loadKey({ modelDir: '/n', provider: 'cpu' }) },
      { ...subject, engine: loadKey({ modelDir: '/m', provider: 'cpu', quantization: 'int4' }) },
      { ...subject, engine: loadKey({ modelDir: '/m', provider: 'cpu', threads: 2 }) },
      { ...subject, engine: 'http://gpu-box:8080/v1' },
    ])
      assert.equal(cache.get(other), undefined, JSON.stringify(other));
    assert.equal(new SpeedupCache(store, '1.0.1').get(subject), undefined, 'a new version measures afresh');
  });
});

describe('the speedup measurement on a real engine process', () => {
  let client: EngineClient;
  before(() => {
    client = new EngineClient({ hostModule: HOST, execArgv: ['--import', 'tsx'] });
  });
  after(() => client.dispose());

  const runOn =
    (token?: CancellationTokenSource['token']): PrefillRun =>
    async (reduced) => {
      const result = await client.ask(
        LOAD,
        { ...PREFILL_ONLY, ...(reduced ? { reduction: REDUCTION } : {}) },
        { text: () => undefined },
        token,
      );
      return result.stopReason === 'cancelled' ? undefined : prefillMs(result.stats);
    };

  test('times paired prefills of the reduced and unreduced model', async () => {
    const speedup = await measureSpeedup(runOn(), 'prefill on cpu', QUICK);
    assert.ok(speedup && speedup.ratio > 0 && speedup.low <= speedup.ratio && speedup.ratio <= speedup.high);
    assert.ok(speedup.pairs >= QUICK.minPairs && speedup.pairs <= QUICK.maxPairs);
  });

  test("a cancelled measurement stops with the engine's cancellation", async () => {
    const source = new CancellationTokenSource();
    source.cancel();
    await assert.rejects(
      measureSpeedup(runOn(source.token), 'prefill', QUICK),
      (error: unknown) => error instanceof EngineError && error.kind === 'cancelled',
    );
  });

  test('a run that fails rejects, for the caller to log', async () => {
    const failing: PrefillRun = async () =>
      prefillMs(
        (await client.ask({ ...LOAD, modelDir: path.join(ROOT, 'nowhere') }, PREFILL_ONLY, { text: () => undefined }))
          .stats,
      );
    await assert.rejects(
      measureSpeedup(failing, 'prefill', QUICK),
      (error: unknown) => error instanceof EngineError && error.kind === 'model-folder',
    );
  });
});
