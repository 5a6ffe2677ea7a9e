import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import type { PrefillProgress } from '../../src/common/prefillProgress';
import { FicocoError } from '../../src/common/errors';
import { PrefillWatch, type PromptChunk, RunPace } from '../../src/engine/prefillWatch';

/** A chunk of `tokens` through `blocks` blocks, half of them attention, after `cached` tokens. */
const chunkOf = (tokens: number, blocks: number, cached = 0): PromptChunk => ({
  tokens,
  blocks,
  attentionBlocks: blocks / 2,
  cached,
});

test('the pace foretells a run at the latest rate of its kind, else of the other kind, and nothing before any', () => {
  const pace = new RunPace();
  assert.equal(pace.expectMs('chunk', 1e9), undefined);
  pace.record('pass', 2e9, 500);
  assert.equal(pace.expectMs('pass', 4e9), 1_000);
  assert.equal(pace.expectMs('chunk', 1e9), 250, 'a first chunk goes at the passes’ rate');
  pace.record('chunk', 1e9, 400);
  assert.equal(pace.expectMs('chunk', 3e9), 1_200);
  pace.record('chunk', 1e9, 100);
  assert.equal(pace.expectMs('chunk', 3e9), 300, 'the latest chunk sets the rate');
  assert.equal(pace.expectMs('pass', 4e9), 1_000);
});

test("a prefill's reports: each stage as it starts and after each run, foretelling the run that starts then", async () => {
  const events: PrefillProgress[] = [];
  const pace = new RunPace();
  const flops = { pass: 1e9, tokenBlock: 1e6, keyPair: 0 };
  const watch = new PrefillWatch({ passes: 2, onProgress: (event) => events.push(event), pace, flops });
  for (let pass = 0; pass < 2; pass++) {
    await watch.beforePass();
    await sleep(60);
    watch.passDone(0.5e9); // half the unreduced pass's FLOPs, as a reduction in the tower leaves
  }
  watch.promptAhead(100, 60);
  // The first chunk is six passes' FLOPs as run, foretold at their pace: about 360 ms (a timer may fire a little early).
  await watch.beforeChunk(chunkOf(50, 60));
  watch.chunkDone(chunkOf(50, 60));
  await watch.beforeChunk(chunkOf(50, 60, 50));
  watch.chunkDone(chunkOf(50, 60, 50));
  assert.deepEqual(
    events.map(({ stage, done, total }) => `${stage} ${done}/${total}`),
    ['image 0/2', 'image 1/2', 'image 2/2', 'prompt 0/6000', 'prompt 3000/6000', 'prompt 6000/6000'],
  );
  assert.equal(events[0].nextRunMs, undefined, 'nothing had run yet');
  assert.ok(events[1].nextRunMs! >= 55, `the second pass at the first's pace: ${events[1].nextRunMs} ms`);
  assert.equal(events[2].nextRunMs, undefined, 'the last pass is done; the prompt reports its own start');
  assert.ok(events[3].nextRunMs! >= 330, `the first chunk: ${events[3].nextRunMs} ms`);
  assert.ok(events[4].nextRunMs! < events[3].nextRunMs!, 'the second chunk at the first chunk’s own (fast) pace');
  assert.equal(events[5].nextRunMs, undefined);
});

test('a stop is seen before the next run starts, after the report of its stage', async () => {
  const stop = new AbortController();
  const events: string[] = [];
  const watch = new PrefillWatch({
    passes: 3,
    signal: stop.signal,
    onProgress: ({ stage, done }) => {
      events.push(`${stage} ${done}`);
      if (done === 0) stop.abort();
    },
    pace: new RunPace(),
    flops: { pass: 1, tokenBlock: 1, keyPair: 1 },
  });
  await assert.rejects(watch.beforePass(), (error) => error instanceof FicocoError && error.kind === 'cancelled');
  assert.deepEqual(events, ['image 0']);
});

test('a prompt chunk is foretold with its attention over the tokens cached before it', async () => {
  // Attention dominates: a chunk of 100 tokens after c cached costs 100 × 2 + 100 × (c + 100) FLOPs.
  const pace = new RunPace();
  const flops = { pass: 1, tokenBlock: 1, keyPair: 1 };
  const chunk = (cached: number): PromptChunk => ({ tokens: 100, blocks: 2, attentionBlocks: 1, cached });
  const foretold: (number | undefined)[] = [];
  /** A prefill of `ahead` prompt tokens on the same engine's pace. */
  const watch = (ahead: number) => {
    const prefill = new PrefillWatch({ passes: 0, onProgress: (event) => foretold.push(event.nextRunMs), pace, flops });
    prefill.promptAhead(ahead, 2);
    return prefill;
  };
  const runMs = 200;
  const long = watch(1100);
  await long.beforeChunk(chunk(0));
  await sleep(runMs);
  long.chunkDone(chunk(0));
  // The second chunk attends to twice the keys: about twice the first's time (a timer fires at most a little early).
  assert.ok(foretold.at(-1)! >= 1.9 * runMs, `the second chunk: ${foretold.at(-1)} ms`);

  // The last chunk of a long prompt (those between passed over) is slow for its attention; the next prompt's first
  // chunk is not.
  await long.beforeChunk(chunk(1000));
  const lastStarted = performance.now();
  await sleep(runMs);
  long.chunkDone(chunk(1000));
  const lastMs = performance.now() - lastStarted;
  await watch(100).beforeChunk(chunk(0));
  // 10,200 FLOPs against 110,200 at the last chunk's pace: about a tenth of its time.
  assert.ok(foretold.at(-1)! <= 0.5 * lastMs, `the next prompt's first chunk: ${foretold.at(-1)} of ${lastMs} ms`);
});
