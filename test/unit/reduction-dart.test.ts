import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

const GRID = { rows: 1, cols: 5 };
const shape = (textLayers: number) => ({
  visionLayers: 23,
  textLayers,
  visualTokens: 5,
  grid: GRID,
  hasClassToken: true,
});

/**
 * Text 0, image tokens 1…5, text 6, 7. Key L1 norms: image token 3 and text token 7 are the largest after the image;
 * text 0 (before the image, the system prompt) has the largest of all but is never a pivot.
 */
const HIDDEN = [
  [-1, 0],
  [1, 0.1],
  [1, 1],
  [1, 0],
  [-1, 0],
  [0.1, 1],
  [0.5, 0.5],
  [0, 1],
];
const KEYS = [
  [9, 9],
  [1, 0],
  [1, 1],
  [3, 0],
  [0, 1],
  [1, 0],
  [1, 0],
  [2, 0],
];

function decoderView(): SiteView {
  const count = HIDDEN.length;
  return {
    site: 'llm:1',
    hidden: Float32Array.from(HIDDEN.flat()),
    count,
    width: 2,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [
      {
        start: 1,
        count: 5,
        grid: GRID,
        patchOwner: Int32Array.of(1, 2, 3, 4, 5),
        tokenPatch: Int32Array.of(0, 1, 2, 3, 4),
      },
    ],
    meanKeys: Float32Array.from(KEYS.flat()),
    keyCount: count,
    hasClassToken: false,
  };
}

describe('DART', () => {
  test('prunes once at llm:(K−1), K−1 = 1 of 32 scaled to the depth, from keys only (no attention)', () => {
    for (const [layers, site] of [
      [32, 'llm:1'],
      [40, 'llm:1'],
      [80, 'llm:3'],
      [6, 'llm:0'],
    ] as const) {
      const { steps } = planReduction('dart', { tokens: 3 }, shape(layers));
      assert.deepEqual([steps.length, steps[0].site, steps[0].remove], [1, site, 2]);
      assert.deepEqual(steps[0].needs, { keys: true });
    }
  });

  test('keeps the image pivot and the image tokens least duplicated by any pivot', () => {
    const { steps } = planReduction('dart', { tokens: 3 }, shape(32), { imagePivots: 1, textPivots: 1 });
    // Pivots: image 3 (h [1, 0]) and text 7 (h [0, 1]). Max cosine: token 1 ≈ 0.995, 2 ≈ 0.707, 4 = 0, 5 ≈ 0.995.
    const out = runStep(steps[0], decoderView());
    assert.deepEqual(Array.from(out.positions), [0, 2, 3, 4, 6, 7]);
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [1, 2, 3]);
  });

  test('without text pivots only image pivots rate duplication', () => {
    const { steps } = planReduction('dart', { tokens: 3 }, shape(32), { imagePivots: 1, textPivots: 0 });
    // Against pivot 3 alone: 1 ≈ 0.995, 2 ≈ 0.707, 4 = −1, 5 ≈ 0.0995 → 4 and 5 join the pivot.
    const out = runStep(steps[0], decoderView());
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [2, 3, 4]);
  });

  test('a budget below the pivot count keeps only the strongest image pivots', () => {
    const { steps } = planReduction('dart', { tokens: 1 }, shape(32), { imagePivots: 4, textPivots: 4 });
    const out = runStep(steps[0], decoderView());
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [2]);
  });
});
