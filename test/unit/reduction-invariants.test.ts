import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StepRecord } from '../../src/reduction/paradigm';
import { METHODS, planReduction } from '../../src/reduction/registry';
import { correlationProblems } from '../../src/reduction/stages/compress';
import { TokenState } from '../../src/reduction/tokenState';
import { DEFAULT_SIM, SimOptions, SimResult, simShape, simulate } from '../helpers/reductionSim';

/**
 * The invariants every reduction must keep, for every registered method, on the miniature engine: a 12×12 grid
 * (144 patches), where 48 / 32 / 16 kept tokens mirror 192 / 128 / 64 of 576.
 */
const BUDGETS = [48, 32, 16];

function run(method: string, keep: number, options: Partial<SimOptions> = {}): SimResult {
  const sim = { ...DEFAULT_SIM, ...options };
  return simulate(planReduction(method, { tokens: keep }, simShape(sim)), sim);
}

/** Visual tokens of each image in the decoder's final sequence. */
function finalVisual(state: TokenState): number[] {
  return state.spans.map((span) => span.count);
}

function sumSizes(state: TokenState, span: TokenState['spans'][number]): number {
  let total = 0;
  for (let i = span.start; i < span.start + span.count; i++) total += state.sizes[i];
  return total;
}

function isMerging(records: StepRecord[]): boolean {
  return records.some((r) => r.correlation.receivers.length > 0);
}

function everySourceMerged(records: StepRecord[]): boolean {
  return records.every((r) =>
    Array.from(r.split.sources).every((_, k) => r.correlation.offsets[k + 1] > r.correlation.offsets[k]),
  );
}

for (const method of METHODS) {
  describe(`${method.name}: reduction invariants`, () => {
    for (const keep of BUDGETS) {
      test(`keeps exactly ${keep} visual tokens per image, with consistent splits and correlations`, () => {
        const result = run(method.name, keep);
        assert.deepEqual(finalVisual(result.final), [keep]);
        for (const record of result.records) {
          const sources = Array.from(record.split.sources);
          const targets = Array.from(record.split.targets);
          assert.equal(new Set(sources).size, sources.length, 'no source twice');
          assert.equal(new Set([...sources, ...targets]).size, sources.length + targets.length, 'S ∩ T = ∅');
          assert.deepEqual(correlationProblems(record.split, record.correlation), []);
        }
        for (const { view, out } of result.states) {
          const removed = view.count - out.count;
          const visualRemoved =
            view.spans.reduce((n, s) => n + s.count, 0) - out.spans.reduce((n, s) => n + s.count, 0);
          assert.equal(removed, visualRemoved, 'only visual tokens leave');
          assert.ok(out.hidden.every(Number.isFinite), 'hidden states stay finite');
        }
      });
    }

    test('sizes account for exactly the patches kept tokens hold; when every source is merged, that is every patch', () => {
      const result = run(method.name, 16);
      const span = result.final.spans[0];
      const held = Array.from(span.patchOwner).filter((owner) => owner >= 0);
      for (const owner of held)
        assert.ok(owner >= span.start && owner < span.start + span.count, 'patches are held by kept visual tokens');
      assert.ok(
        Math.abs(sumSizes(result.final, span) - held.length) < 1e-3,
        `sizes sum to ${sumSizes(result.final, span)}, ${held.length} patches held`,
      );
      if (everySourceMerged(result.records)) assert.equal(held.length, 144, 'merging loses no patch');
    });

    // Each invariant below is asked only of the methods it is about, so every test reaches its assertions.
    const sample = run(method.name, 16);
    if (!isMerging(sample.records))
      test('pruning leaves each kept token exactly its own patch, dropped patches −1', () => {
        const result = run(method.name, 16);
        const span = result.final.spans[0];
        const owned = Array.from(span.patchOwner).filter((o) => o >= 0);
        assert.equal(new Set(owned).size, owned.length, 'no token holds two patches');
        for (let i = 0; i < span.count; i++) {
          const patch = span.tokenPatch[i];
          if (patch >= 0) assert.equal(span.patchOwner[patch], span.start + i);
        }
      });

    test('is deterministic: two runs are bit-identical, and runs do not leak state into each other', () => {
      const first = run(method.name, 32);
      run(method.name, 16, { seed: 7 });
      const again = run(method.name, 32);
      assert.deepEqual(Array.from(again.final.hidden), Array.from(first.final.hidden));
      assert.deepEqual(Array.from(again.final.positions), Array.from(first.final.positions));
    });

    if (sample.states.some(({ view }) => view.hasClassToken))
      test('[CLS] is never a source and stays at index 0 at vision sites', () => {
        const result = run(method.name, 16);
        const withClass = result.states.filter(({ view }) => view.hasClassToken);
        assert.ok(withClass.length > 0);
        for (const { view, out } of withClass) {
          assert.ok(!Array.from(result.records.find((r) => r.site === view.site)!.split.sources).includes(0));
          assert.equal(out.spans[0].start, 1);
          assert.equal(out.positions[0], view.positions[0]);
        }
      });

    test('a budget of every token changes nothing; a budget above it is refused, not silently unreduced', () => {
      const result = run(method.name, 144);
      assert.equal(result.records.length, 0);
      assert.deepEqual(finalVisual(result.final), [144]);
      assert.throws(
        () => run(method.name, 500),
        /A budget of 500 visual tokens is more than the 144 this model gives an image/,
      );
    });

    test('one visual token, odd grids, no text and two images all work', () => {
      assert.deepEqual(finalVisual(run(method.name, 1).final), [1]);
      assert.deepEqual(finalVisual(run(method.name, 10, { grid: { rows: 7, cols: 5 } }).final), [10]);
      assert.deepEqual(finalVisual(run(method.name, 12, { textBefore: 0, textAfter: 0 }).final), [12]);
      assert.deepEqual(finalVisual(run(method.name, 20, { images: 2 }).final), [20, 20]);
    });

    test('positions of kept tokens stay strictly increasing in the decoder', () => {
      const { final } = run(method.name, 16, { images: 2 });
      for (let i = 1; i < final.count; i++) assert.ok(final.positions[i] > final.positions[i - 1]);
    });
  });
}
