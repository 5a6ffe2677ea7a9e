import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { seededRandom } from '../../src/common/random';
import { cosineMatrix, topIndices } from '../../src/reduction/arrays';
import { StepRecord, runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

/**
 * The `features` site of one image with [CLS] at index 0: hidden rows (width 2) and keys (head dim 2) per token, [CLS]
 * first.
 */
function featuresView(
  grid: { rows: number; cols: number },
  hidden: number[][],
  clsAttention: number[],
  keys: number[][],
): SiteView {
  const count = hidden.length;
  const patches = count - 1;
  const attention = new Float32Array(count * count);
  attention.set(clsAttention);
  return {
    site: 'features',
    hidden: Float32Array.from(hidden.flat()),
    count,
    width: hidden[0].length,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [
      {
        start: 1,
        count: patches,
        grid,
        patchOwner: Int32Array.from({ length: patches }, (_, p) => 1 + p),
        tokenPatch: Int32Array.from({ length: patches }, (_, p) => p),
      },
    ],
    attention,
    keyCosine: cosineMatrix(Float32Array.from(keys.flat()), count, keys[0].length),
    keyCount: count,
    hasClassToken: true,
  };
}

const shape = (grid: { rows: number; cols: number }) => ({
  visionLayers: 24,
  textLayers: 32,
  visualTokens: grid.rows * grid.cols,
  grid,
  hasClassToken: true,
});

describe('VisionZip', () => {
  test('keeps the dominant tokens as they are and replaces each contextual target by the mean of its group', () => {
    const grid = { rows: 4, cols: 4 };
    // Dominant: patches 0–5 (attention 10 … 5). The other 10 in order: 6 7 8 9 10 11 12 13 14 15; ⌊10/2⌋ = 5 → targets
    // 6 and 11.
    const clsAttention = [0, 10, 9, 8, 7, 6, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    const nearSix = [7, 8, 12];
    const keyOf = (p: number): number[] =>
      p === 6 ? [1, 0] : p === 11 ? [0, 1] : p < 6 ? [1, 1] : nearSix.includes(p) ? [1, 0.1] : [0.1, 1];
    const hidden = [[100, 100], ...Array.from({ length: 16 }, (_, p) => [p, 1])];
    const keys = [[1, 1], ...Array.from({ length: 16 }, (_, p) => keyOf(p))];
    const [step] = planReduction('visionzip', { tokens: 8 }, shape(grid), { contextualShare: 0.25 }).steps;
    assert.deepEqual(step.needs, { attention: 'probs', keyCosine: true });
    const out = runStep(step, featuresView(grid, hidden, clsAttention, keys));

    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [0, 1, 2, 3, 4, 5, 6, 11]);
    // (6 + 7 + 8 + 12) / 4 = 8.25; (11 + 9 + 10 + 13 + 14 + 15) / 6 = 12.
    assert.deepEqual(Array.from(out.hidden), [100, 100, 0, 1, 1, 1, 2, 1, 3, 1, 4, 1, 5, 1, 8.25, 1, 12, 1]);
    assert.deepEqual(Array.from(out.sizes), [1, 1, 1, 1, 1, 1, 1, 4, 6]);
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [1, 2, 3, 4, 5, 6, 7, 7, 7, 8, 8, 8, 7, 8, 8, 8]);
  });

  test('splits the budget 54 : 10 at 64 tokens and 162 : 30 at 192 on a 24 × 24 grid, each source to one target', () => {
    const grid = { rows: 24, cols: 24 };
    const random = seededRandom(3);
    const hidden = Array.from({ length: 577 }, () => [random(), random()]);
    const keys = Array.from({ length: 577 }, () => [random() - 0.5, random() - 0.5, random() - 0.5]);
    const clsAttention = Array.from({ length: 577 }, () => random());
    for (const [keep, contextual] of [
      [64, 10],
      [192, 30],
    ]) {
      const log: StepRecord[] = [];
      const [step] = planReduction('visionzip', { tokens: keep }, shape(grid)).steps;
      const out = runStep(step, featuresView(grid, hidden, clsAttention, keys), log);
      assert.equal(out.spans[0].count, keep);
      const { correlation, split } = log[0];
      const dominant = new Set(topIndices(clsAttention.slice(1), keep - contextual).map((p) => 1 + p));
      const contextualTargets = Array.from(split.targets).filter((t) => !dominant.has(t));
      assert.equal(contextualTargets.length, contextual);
      assert.ok(
        Array.from(correlation.receivers).every((r) => contextualTargets.includes(r)),
        'sources go to contextual targets only',
      );
      assert.deepEqual(
        Array.from(correlation.offsets),
        Array.from({ length: split.sources.length + 1 }, (_, k) => k),
      );
      assert.ok(correlation.weights.every((w) => w === 1));
    }
  });

  test('with no contextual share it is FasterVLM: the top tokens by [CLS] attention, nothing merged', () => {
    const grid = { rows: 4, cols: 4 };
    const clsAttention = [0, 1, 1, 9, 1, 1, 1, 1, 8, 1, 1, 1, 1, 1, 1, 1, 7];
    const hidden = Array.from({ length: 17 }, (_, t) => [t, 1]);
    const keys = Array.from({ length: 17 }, (_, t) => [t % 3, 1]);
    const [step] = planReduction('visionzip', { tokens: 3 }, shape(grid), { contextualShare: 0 }).steps;
    const out = runStep(step, featuresView(grid, hidden, clsAttention, keys));
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [2, 7, 15]);
    assert.deepEqual(Array.from(out.sizes), [1, 1, 1, 1]);
  });
});
