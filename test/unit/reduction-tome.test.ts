import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cosineMatrix } from '../../src/reduction/arrays';
import { ModelShape } from '../../src/reduction/method';
import { halvingRemovals, receiverStride } from '../../src/reduction/methods/tome';
import { StepRecord, runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

const SHAPE: ModelShape = {
  visionLayers: 6,
  textLayers: 4,
  visualTokens: 144,
  grid: { rows: 12, cols: 12 },
  hasClassToken: true,
};

/**
 * [CLS] then six patches at sequence 1…6: A = even indices {2, 4, 6}, B = odd {1, 3, 5}.
 * Cosines to B: 2 → (1: 0.894, 3: 0.447), 4 → (3: 1), 6 → (1 and 3: 0.707, tie to 1).
 */
function sixPatchView(): SiteView {
  const keys = [
    [1, 0],
    [1, 0],
    [1, 0.5],
    [0, 1],
    [0, 2],
    [-1, 0],
    [1, 1],
  ];
  const hidden = [
    [9, 9],
    [1, 1],
    [4, 4],
    [0, 3],
    [4, 3],
    [7, 7],
    [8, 8],
  ];
  return {
    site: 'vision:0',
    hidden: Float32Array.from(hidden.flat()),
    count: 7,
    width: 2,
    sizes: Float32Array.of(1, 2, 1, 1, 3, 1, 1),
    positions: Int32Array.from({ length: 7 }, (_, i) => i),
    spans: [
      {
        start: 1,
        count: 6,
        grid: { rows: 2, cols: 3 },
        patchOwner: Int32Array.of(1, 2, 3, 4, 5, 6),
        tokenPatch: Int32Array.of(0, 1, 2, 3, 4, 5),
      },
    ],
    keyCosine: cosineMatrix(Float32Array.from(keys.flat()), 7, 2),
    keyCount: 7,
    hasClassToken: true,
  };
}

describe('ToMe bipartite soft matching', () => {
  test('merges the A tokens most similar to B into their best B token, size-weighted, sizes and patches carried', () => {
    const step = { ...planReduction('tome', { tokens: 16 }, SHAPE).steps[0], remove: 2 };
    const log: StepRecord[] = [];
    const out = runStep(step, sixPatchView(), log);
    assert.deepEqual(Array.from(log[0].split.sources), [2, 4]);
    assert.deepEqual(Array.from(log[0].split.targets), [1, 3, 5, 6]);
    // Source 2 → receiver 1, source 4 → receiver 3, one receiver each (K = 1).
    assert.deepEqual(Array.from(log[0].correlation.receivers), [1, 3]);
    assert.deepEqual(Array.from(log[0].correlation.weights), [1, 1]);
    // x1 ← (2·[1,1] + 1·[4,4]) / 3 = [2,2]; x3 ← (1·[0,3] + 3·[4,3]) / 4 = [3,3]; [CLS] untouched.
    assert.deepEqual(Array.from(out.hidden), [9, 9, 2, 2, 3, 3, 7, 7, 8, 8]);
    assert.deepEqual(Array.from(out.sizes), [1, 3, 4, 1, 1]);
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [0, 2, 4, 5]);
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [1, 1, 2, 2, 3, 4]);
  });

  test('[CLS] is never a candidate and B tokens never leave, whatever their keys', () => {
    const log: StepRecord[] = [];
    runStep({ ...planReduction('tome', { tokens: 16 }, SHAPE).steps[0], remove: 3 }, sixPatchView(), log);
    assert.deepEqual(Array.from(log[0].split.sources), [2, 4, 6]);
    assert.deepEqual(Array.from(log[0].correlation.receivers), [1, 3, 1]);
  });

  test("the split alternates for r up to half the span and widens B's stride (kth bipartite) only beyond it", () => {
    const span = sixPatchView().spans[0];
    assert.equal(receiverStride(span, 3), 2);
    // Stride 3 over sequence indices 1…6: B = {2, 5} (index + 1 divisible by 3), |A| = 4.
    assert.equal(receiverStride(span, 4), 3);
    // Stride 4: B = {3} alone, |A| = 5.
    assert.equal(receiverStride(span, 5), 4);
  });
});

describe('ToMe schedule', () => {
  test("even r per layer, earlier layers taking the extra token, never more than half a layer's tokens", () => {
    assert.deepEqual(halvingRemovals(144, 16, 6), [23, 23, 22, 22, 22, 16]);
    assert.deepEqual(
      halvingRemovals(576, 64, 23).reduce((a, b) => a + b, 0),
      512,
    );
    assert.ok(halvingRemovals(576, 64, 23).every((r) => r === 22 || r === 23));
  });

  test('when the layers cannot halve down to the budget, the first layer takes the rest', () => {
    assert.deepEqual(halvingRemovals(144, 1, 6), [112, 16, 8, 4, 2, 1]);
  });

  test(
    'every layer that runs reduces from the start fraction, asks for the key cosine and carries ' +
      'proportional attention',
    () => {
      const plan = planReduction('tome', { tokens: 16 }, SHAPE);
      assert.deepEqual(
        plan.steps.map((s) => s.site),
        ['vision:0', 'vision:1', 'vision:2', 'vision:3', 'vision:4', 'vision:5'],
      );
      assert.ok(plan.steps.every((s) => s.needs.keyCosine === true && s.needs.proportionalAttention === true));
      assert.ok(
        planReduction('tome', { tokens: 16 }, SHAPE, { proportionalAttention: false }).steps.every(
          (s) => s.needs.proportionalAttention === false,
        ),
      );
      assert.deepEqual(
        planReduction('tome', { tokens: 16 }, SHAPE, { start: 0.5 }).steps.map((s) => s.site),
        ['vision:3', 'vision:4', 'vision:5'],
      );
    },
  );
});
