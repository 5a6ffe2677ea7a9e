import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cosineMatrix } from '../../src/reduction/arrays';
import { StepRecord, runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

/**
 * The `features` site of one image, [CLS] at index 0: patch p has hidden [p, 1]; `clsAttention` and `keys` per patch.
 */
function featuresView(grid: { rows: number; cols: number }, clsAttention: number[], keys: number[][]): SiteView {
  const patches = grid.rows * grid.cols;
  const count = patches + 1;
  const attention = new Float32Array(count * count);
  attention.set(clsAttention, 1);
  return {
    site: 'features',
    hidden: Float32Array.from([100, 100, ...Array.from({ length: patches }, (_, p) => [p, 1]).flat()]),
    count,
    width: 2,
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
    keyCosine: cosineMatrix(Float32Array.from([1, 1, ...keys.flat()]), count, 2),
    keyCount: count,
    hasClassToken: true,
  };
}

function run(
  grid: { rows: number; cols: number },
  keep: number,
  clsAttention: number[],
  keys: number[][],
  params: Record<string, unknown> = {},
  log?: StepRecord[],
) {
  const shape = { visionLayers: 24, textLayers: 32, visualTokens: grid.rows * grid.cols, grid, hasClassToken: true };
  const [step] = planReduction('prumerge-plus', { tokens: keep }, shape, params).steps;
  return runStep(step, featuresView(grid, clsAttention, keys), log);
}

describe('PruMerge+ token selection (4 × 4)', () => {
  const grid = { rows: 4, cols: 4 };
  // IQR: Q1 = Q3 = 1, so the outliers are exactly patches 5 (10) and 10 (8); m = 2 → samples every ⌊⌊16/2⌋/3⌋ = 2
  // patches.
  const attention = Array.from({ length: 16 }, (_, p): number => (p === 5 ? 10 : p === 10 ? 8 : 1));
  const keys = Array.from({ length: 16 }, (_, p) => [Math.cos(p), Math.sin(p)]);
  const keptPatches = (keep: number, scores = attention) =>
    Array.from(run(grid, keep, scores, keys).spans[0].tokenPatch);

  test('takes the outliers, then spatial samples evenly thinned to the room left', () => {
    // Samples 0 2 4 6 8 12 14 (10 is an outlier); 2 of 7 → the ⌊1.75⌋-th and ⌊5.25⌋-th: 2 and 12.
    assert.deepEqual(keptPatches(4), [2, 5, 10, 12]);
  });

  test('keeps only the highest-attention outliers when they exceed the budget', () => {
    assert.deepEqual(keptPatches(1), [5]);
  });

  test('fills the rest of a large budget by attention, ties to the earlier patch', () => {
    // 2 outliers + 7 samples = 9; 3 more of 1 3 7 9 11 13 15 (all attention 1) → 1 3 7.
    assert.deepEqual(keptPatches(12), [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14]);
  });

  test('without outliers, samples every ⌊n/B⌋-th patch', () => {
    assert.deepEqual(keptPatches(4, new Array<number>(16).fill(1)), [0, 4, 8, 12]);
  });
});

describe('PruMerge+ merge (2 × 3)', () => {
  const grid = { rows: 2, cols: 3 };
  // Patch 0 is the only outlier; samples 0 2 4 → kept {0, 4}; pruned 1 2 3 5.
  const attention = [10, 1, 1, 1, 1, 1];
  // Kept 0 ~ [1, 0], kept 4 ~ [0, 1]; 1 and 3 lean to 0 (cos 0.981, 0.894), 2 and 5 to 4.
  const keys = [
    [1, 0],
    [1, 0.2],
    [0.2, 1],
    [1, 0.5],
    [0, 1],
    [0.5, 1],
  ];

  test('with k = 3 a pruned token picked by both kept tokens splits its weight, and merges are attention-weighted', () => {
    const log: StepRecord[] = [];
    const out = run(grid, 2, attention, keys, { neighbours: 3 }, log);
    const { split, correlation } = log[0];
    assert.deepEqual(Array.from(split.targets), [1, 5]);
    assert.deepEqual(Array.from(split.sources), [2, 3, 4, 6]);
    // patch 1 → 0; patch 2 → 4; patch 3 → 0 and 4 (nearer 0 first); patch 5 → 4 and 0.
    assert.deepEqual(Array.from(correlation.offsets), [0, 1, 2, 4, 6]);
    assert.deepEqual(Array.from(correlation.receivers), [1, 5, 1, 5, 5, 1]);
    assert.deepEqual(Array.from(correlation.weights), [1, 1, 0.5, 0.5, 0.5, 0.5]);
    // token 0: (10·[0,1] + [1,1] + ½[3,1] + ½[5,1]) / 12 = [5/12, 1]; token 4: ([4,1] + [2,1] + ½[5,1] + ½[3,1]) / 3 =
    // [10/3, 1].
    const expected = [100, 100, 5 / 12, 1, 10 / 3, 1];
    Array.from(out.hidden).forEach((v, i) =>
      assert.ok(Math.abs(v - expected[i]) < 1e-6, `hidden[${i}] = ${v}, expected ${expected[i]}`),
    );
    assert.deepEqual(Array.from(out.sizes), [1, 3, 3]);
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [1, 1, 2, 1, 2, 2]);
  });

  test('with k = 1 a pruned token no kept token picked goes to its most similar kept token', () => {
    const out = run(grid, 2, attention, keys, { neighbours: 1 });
    // token 0 takes 1 (picked) and 3 (fallback): (10·[0,1] + [1,1] + [3,1]) / 12; token 4 takes 2 and 5: ([4,1] + [2,1]
    // + [5,1]) / 3.
    const expected = [100, 100, 4 / 12, 1, 11 / 3, 1];
    Array.from(out.hidden).forEach((v, i) =>
      assert.ok(Math.abs(v - expected[i]) < 1e-6, `hidden[${i}] = ${v}, expected ${expected[i]}`),
    );
    assert.deepEqual(Array.from(out.sizes), [1, 3, 3]);
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [1, 1, 2, 1, 2, 2]);
  });
});
