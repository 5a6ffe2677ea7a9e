import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cosineMatrix } from '../../src/reduction/arrays';
import { clusterCount, prunedForNetRemoval, recycledCount } from '../../src/reduction/methods/sparsevlm';
import { runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { densityPeakClusters } from '../../src/reduction/stages/recycle';
import { SiteView } from '../../src/reduction/tokenState';

const LLAVA = {
  visionLayers: 23,
  textLayers: 32,
  visualTokens: 576,
  grid: { rows: 24, cols: 24 },
  hasClassToken: true,
};
const CODE_DEFAULTS = { recycleShare: 0.3, clusterRatio: 0.1 };

/**
 * Text 0, image tokens 1…6 (2×3 grid, hidden [1, i]), text 7 (hidden [10, 0]) and 8 (hidden [0, 0]).
 * Every image token's softmax over the text prefers 7, so 7 is the only rater; its attention row scores the image.
 */
function decoderView(): SiteView {
  const count = 9;
  const grid = { rows: 2, cols: 3 };
  const hidden = new Float32Array(count * 2);
  for (let i = 1; i <= 6; i++) hidden.set([1, i], i * 2);
  hidden.set([10, 0], 14);
  const attention = new Float32Array(count * count);
  // Rater row: image tokens 1…6 get 0.30, 0.02, 0.20, 0.03, 0.25, 0.05. Other rows favour token 2, which must not
  // matter.
  attention.set([0.05, 0.3, 0.02, 0.2, 0.03, 0.25, 0.05, 0.1, 0], 7 * count);
  for (const query of [0, 8]) attention.set([0, 0, 1, 0, 0, 0, 0, 0, 0], query * count);
  return {
    site: 'llm:2',
    hidden,
    hiddenCosine: cosineMatrix(hidden, count, 2),
    count,
    width: 2,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [
      {
        start: 1,
        count: 6,
        grid,
        patchOwner: Int32Array.of(1, 2, 3, 4, 5, 6),
        tokenPatch: Int32Array.of(0, 1, 2, 3, 4, 5),
      },
    ],
    attention,
    keyCount: count,
    hasClassToken: false,
  };
}

describe('SparseVLM', () => {
  test('prunes inside layers 2, 6 and 15 of 32 (scaled to the depth), geometric net removals ending at the budget', () => {
    const { steps } = planReduction('sparsevlm', { tokens: 64 }, LLAVA);
    assert.deepEqual(
      steps.map((s) => s.site),
      ['llm:2', 'llm:6', 'llm:15'],
    );
    assert.deepEqual(
      steps.map((s) => s.remove),
      [299, 144, 69],
    );
    assert.ok(steps.every((s) => s.needs.attention === 'probs'));
    assert.deepEqual(
      planReduction('sparsevlm', { tokens: 64 }, { ...LLAVA, textLayers: 40 }).steps.map((s) => s.site),
      ['llm:3', 'llm:8', 'llm:19'],
    );
    assert.deepEqual(
      planReduction('sparsevlm', { tokens: 64 }, { ...LLAVA, textLayers: 2 }).steps.map((s) => [s.site, s.remove]),
      [
        ['llm:0', 443],
        ['llm:1', 69],
      ],
    );
  });

  test(
    'recycling counts follow the code: 273 pruned → 82 recycled → 9 new tokens, so a net removal of 264 ' +
      'prunes 273',
    () => {
      assert.equal(recycledCount(273, 0.3), 82);
      assert.equal(clusterCount(82, 0.1), 9);
      assert.equal(prunedForNetRemoval(264, 576, CODE_DEFAULTS), 273);
      assert.equal(prunedForNetRemoval(3, 6, CODE_DEFAULTS), 4);
      // Keeping one token leaves no room for a recycled one: plain pruning.
      assert.equal(prunedForNetRemoval(5, 6, CODE_DEFAULTS), 5);
      assert.equal(recycledCount(0, 0.3), 0);
    },
  );

  test('density peaks split two well separated groups around their densest points', () => {
    // d_ij = |x_i − x_j| for the 1-D points 0, 0.1, 0.2, 10, 10.1.
    const points = Array.from(Float32Array.of(0, 0.1, 0.2, 10, 10.1));
    const distance = Float64Array.from(points.flatMap((a) => points.map((b) => Math.abs(a - b))));
    assert.deepEqual(densityPeakClusters(distance, 5, 2), [
      [0, 1, 2],
      [3, 4],
    ]);
    assert.deepEqual(densityPeakClusters(distance, 5, 1), [[0, 1, 2, 3, 4]]);
  });

  test(
    'prunes the tokens the raters attend to least and recycles the best of them into one new token at ' +
      'its latest position',
    () => {
      const { steps } = planReduction(
        'sparsevlm',
        { tokens: 3 },
        { ...LLAVA, visualTokens: 6, grid: { rows: 2, cols: 3 } },
      );
      // Net 3: prune 4 (tokens 2, 4, 6, 3), recycle the 2 best of them (3 and 6) into 1 token; keep 1 and 5.
      const out = runStep({ ...steps[0], remove: 3 }, decoderView());
      const span = out.spans[0];
      assert.equal(span.count, 3);
      assert.deepEqual(Array.from(out.positions), [0, 1, 5, 6, 7, 8]);
      assert.deepEqual(Array.from(span.tokenPatch), [0, 4, -1]);
      assert.deepEqual(Array.from(span.patchOwner), [1, -1, 3, -1, 2, 3]);
      assert.deepEqual(Array.from(out.sizes), [1, 1, 1, 2, 1, 1]);
      assert.deepEqual(Array.from(out.hidden.subarray(6, 8)), [1, 4.5]);
    },
  );
});
