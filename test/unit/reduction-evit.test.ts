import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ModelShape } from '../../src/reduction/method';
import { SINK, StepRecord, runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

const SHAPE: ModelShape = {
  visionLayers: 12,
  textLayers: 4,
  visualTokens: 144,
  grid: { rows: 12, cols: 12 },
  hasClassToken: true,
};

/** [CLS], five patches at 1…5 and one more token at 6; [CLS] attends 0.3, 0.05, 0.25, 0.2, 0.1 to the patches. */
function fivePatchView(hasClassToken = true): SiteView {
  const count = 7;
  const attention = new Float32Array(count * count).fill(1 / count);
  attention.set([0.05, 0.3, 0.05, 0.25, 0.2, 0.1, 0.05], 0);
  return {
    site: 'vision:3',
    hidden: Float32Array.from(
      [
        [9, 9],
        [5, 5],
        [1, 0],
        [6, 6],
        [0, 1],
        [2, 2],
        [3, 3],
      ].flat(),
    ),
    count,
    width: 2,
    sizes: Float32Array.of(1, 1, 1, 1, 2, 1, 1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [
      {
        start: 1,
        count: 5,
        grid: { rows: 1, cols: 5 },
        patchOwner: Int32Array.of(1, 2, 3, 4, 5),
        tokenPatch: Int32Array.of(0, 1, 2, 3, 4),
      },
    ],
    attention,
    keyCount: count,
    hasClassToken,
  };
}

function firstStep(params: Record<string, unknown> = {}) {
  return planReduction('evit', { tokens: 16 }, SHAPE, params).steps[0];
}

describe('EViT', () => {
  test('the r + 1 least [CLS]-attended patches fuse into one token Σa·x/Σa appended to the span', () => {
    const log: StepRecord[] = [];
    const out = runStep({ ...firstStep(), remove: 2 }, fivePatchView(), log);
    assert.deepEqual(Array.from(log[0].split.sources), [2, 4, 5]);
    assert.deepEqual(Array.from(log[0].correlation.receivers), [SINK, SINK, SINK]);
    // (0.05·[1,0] + 0.2·[0,1] + 0.1·[2,2]) / 0.35 = [0.25, 0.4] / 0.35
    const fused = Array.from(out.hidden.subarray(6, 8));
    assert.ok(Math.abs(fused[0] - 0.25 / 0.35) < 1e-6 && Math.abs(fused[1] - 0.4 / 0.35) < 1e-6, `fused ${fused}`);
    assert.deepEqual(Array.from(out.hidden.subarray(0, 6)), [9, 9, 5, 5, 6, 6]);
    assert.deepEqual(Array.from(out.hidden.subarray(8)), [3, 3]);
    assert.deepEqual(Array.from(out.sizes), [1, 1, 1, 4, 1]);
    assert.deepEqual(Array.from(out.positions), [0, 1, 3, 5, 6]);
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [0, 2, -1]);
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [1, 3, 2, 3, 3]);
  });

  test("fusedMean off gives the EViT code's unnormalised Σa·x", () => {
    const out = runStep({ ...firstStep({ fusedMean: false }), remove: 2 }, fivePatchView());
    const fused = Array.from(out.hidden.subarray(6, 8));
    assert.ok(Math.abs(fused[0] - 0.25) < 1e-6 && Math.abs(fused[1] - 0.4) < 1e-6, `fused ${fused}`);
  });

  test('without [CLS] the importance is the mean attention a token receives', () => {
    const view = fivePatchView(false);
    // Token 3 receives the most on average, token 1 the least.
    for (let q = 1; q < view.count; q++) {
      view.attention![q * view.count + 3] = 0.5;
      view.attention![q * view.count + 1] = 0;
    }
    const log: StepRecord[] = [];
    runStep({ ...firstStep(), remove: 3 }, view, log);
    assert.deepEqual(Array.from(log[0].split.targets), [3]);
  });

  test("three layers at 1/4, 1/2, 3/4 of the tower (DeiT's 0-based 3, 6, 9 of 12) with a constant keep rate", () => {
    const plan = planReduction('evit', { tokens: 16 }, SHAPE);
    assert.deepEqual(
      plan.steps.map((s) => s.site),
      ['vision:3', 'vision:6', 'vision:9'],
    );
    assert.deepEqual(
      plan.steps.map((s) => s.remove),
      [144 - 69, 69 - 33, 33 - 16],
    );
    assert.ok(plan.steps.every((s) => s.needs.attention === 'probs'));
  });
});
