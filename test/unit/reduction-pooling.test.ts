import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ModelShape } from '../../src/reduction/method';
import { poolingBands, poolingWindows } from '../../src/reduction/methods/pooling';
import { runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

function shape(rows: number, cols: number): ModelShape {
  return { visionLayers: 4, textLayers: 4, visualTokens: rows * cols, grid: { rows, cols }, hasClassToken: true };
}

/** Projected tokens of a rows×cols grid whose hidden value is the patch index. */
function projectorView(rows: number, cols: number): SiteView {
  const n = rows * cols;
  return {
    site: 'projector',
    hidden: Float32Array.from({ length: n }, (_, i) => i),
    count: n,
    width: 1,
    sizes: new Float32Array(n).fill(1),
    positions: Int32Array.from({ length: n }, (_, i) => i),
    spans: [
      {
        start: 0,
        count: n,
        grid: { rows, cols },
        patchOwner: Int32Array.from({ length: n }, (_, i) => i),
        tokenPatch: Int32Array.from({ length: n }, (_, i) => i),
      },
    ],
    keyCount: n,
    hasClassToken: false,
  };
}

describe('spatial average pooling', () => {
  test("the output grid is the factorisation of the budget closest to the grid's aspect", () => {
    assert.deepEqual(poolingBands({ rows: 4, cols: 4 }, 16), [4, 4, 4, 4]);
    assert.deepEqual(poolingBands({ rows: 24, cols: 24 }, 16), [4, 4, 4, 4]);
    assert.deepEqual(poolingBands({ rows: 12, cols: 12 }, 12), [4, 4, 4]);
    assert.deepEqual(poolingBands({ rows: 6, cols: 12 }, 8), [4, 4]);
    // 13 has no factorisation inside 12 × 12: four bands of 4, 3, 3, 3 windows.
    assert.deepEqual(poolingBands({ rows: 12, cols: 12 }, 13), [4, 3, 3, 3]);
  });

  test('a 4×4 grid pooled to 4 averages each 2×2 window into its first token', () => {
    const out = runStep(planReduction('pooling', { tokens: 4 }, shape(4, 4)).steps[0], projectorView(4, 4));
    // windows {0,1,4,5}, {2,3,6,7}, {8,9,12,13}, {10,11,14,15}
    assert.deepEqual(Array.from(out.hidden), [2.5, 4.5, 10.5, 12.5]);
    assert.deepEqual(Array.from(out.sizes), [4, 4, 4, 4]);
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [0, 2, 8, 10]);
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
  });

  test('uneven grids are partitioned with floor bounds: every patch in exactly one window', () => {
    const span = projectorView(5, 5).spans[0];
    const windows = Array.from(poolingWindows(span, 4));
    // rows [0,2) and [2,5), columns likewise: windows of 4, 6, 6 and 9 patches
    assert.deepEqual(
      [0, 1, 2, 3].map((w) => windows.filter((x) => x === w).length),
      [4, 6, 6, 9],
    );
    const out = runStep(planReduction('pooling', { tokens: 4 }, shape(5, 5)).steps[0], projectorView(5, 5));
    assert.deepEqual(Array.from(out.hidden), [
      (0 + 1 + 5 + 6) / 4,
      (2 + 3 + 4 + 7 + 8 + 9) / 6,
      (10 + 11 + 15 + 16 + 20 + 21) / 6,
      (12 + 13 + 14 + 17 + 18 + 19 + 22 + 23 + 24) / 9,
    ]);
  });
});
