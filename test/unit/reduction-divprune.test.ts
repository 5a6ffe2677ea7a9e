import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cosineMatrix } from '../../src/reduction/arrays';
import { runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { maxMinDiverse } from '../../src/reduction/stages/diversity';
import { SiteView } from '../../src/reduction/tokenState';

const GRID = { rows: 2, cols: 3 };
// A ≈ B, D ≈ E; C and F orthogonal to A and D. Nearest-neighbour distances (1 − cos): A, B 0.005; C 0.90 (to B);
// D, E 0.001; F 0.95 (to E). Seed F; then C (distance 2); then A and D tie at exactly 1 → A; then D (1 vs B 0.005, E
// 0.95); then B (0.005 vs E 0.001).
const EMBEDDINGS = [
  [1, 0],
  [1, 0.1],
  [0, 1],
  [-1, 0],
  [-1, -0.05],
  [0, -1],
];

function packedView(): SiteView {
  return {
    site: 'packed',
    hidden: Float32Array.from(EMBEDDINGS.flat()),
    hiddenCosine: cosineMatrix(Float32Array.from(EMBEDDINGS.flat()), 6, 2),
    count: 6,
    width: 2,
    sizes: new Float32Array(6).fill(1),
    positions: Int32Array.from({ length: 6 }, (_, i) => i),
    spans: [
      {
        start: 0,
        count: 6,
        grid: GRID,
        patchOwner: Int32Array.from({ length: 6 }, (_, p) => p),
        tokenPatch: Int32Array.from({ length: 6 }, (_, p) => p),
      },
    ],
    keyCount: 6,
    hasClassToken: false,
  };
}

const SHAPE = { visionLayers: 24, textLayers: 32, visualTokens: 6, grid: GRID, hasClassToken: true };

describe('DivPrune', () => {
  test('greedy max–min: seed = farthest nearest neighbour, then the token farthest from the chosen set', () => {
    assert.deepEqual(
      maxMinDiverse(cosineMatrix(Float32Array.from(EMBEDDINGS.flat()), 6, 2), 6, { start: 0, count: 6 }, 6),
      [5, 2, 0, 3, 1, 4],
    );
  });

  test('is one pruning step on the packed projected embeddings, needing no attention', () => {
    const { steps } = planReduction('divprune', { tokens: 3 }, SHAPE);
    assert.equal(steps.length, 1);
    assert.equal(steps[0].site, 'packed');
    assert.deepEqual(steps[0].needs, { hiddenCosine: true });
  });

  for (const [keep, kept] of [
    [1, [5]],
    [3, [0, 2, 5]],
    [4, [0, 2, 3, 5]],
  ] as const) {
    test(`keeps the ${keep} most diverse tokens, unchanged and in sequence order`, () => {
      const [step] = planReduction('divprune', { tokens: keep }, SHAPE).steps;
      const out = runStep(step, packedView());
      assert.deepEqual(Array.from(out.spans[0].tokenPatch), kept);
      assert.deepEqual(Array.from(out.hidden), kept.flatMap((t) => EMBEDDINGS[t]).map(Math.fround));
    });
  }
});
