import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ModelShape } from '../../src/reduction/method';
import { StepRecord, runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

const SHAPE: ModelShape = {
  visionLayers: 4,
  textLayers: 4,
  visualTokens: 16,
  grid: { rows: 4, cols: 4 },
  hasClassToken: true,
};

function projectorView(): SiteView {
  return {
    site: 'projector',
    hidden: Float32Array.from({ length: 16 }, (_, i) => i),
    count: 16,
    width: 1,
    sizes: new Float32Array(16).fill(1),
    positions: Int32Array.from({ length: 16 }, (_, i) => i),
    spans: [
      {
        start: 0,
        count: 16,
        grid: SHAPE.grid,
        patchOwner: Int32Array.from({ length: 16 }, (_, i) => i),
        tokenPatch: Int32Array.from({ length: 16 }, (_, i) => i),
      },
    ],
    keyCount: 16,
    hasClassToken: false,
  };
}

function keptPatches(seed: number, pass?: number): number[] {
  const plan = planReduction('random', { tokens: 5 }, SHAPE, { seed });
  return Array.from(runStep(plan.steps[0], { ...projectorView(), pass }).hidden);
}

describe('random pruning', () => {
  test('one projector step that drops the tokens it does not keep', () => {
    const plan = planReduction('random', { tokens: 5 }, SHAPE);
    assert.deepEqual(
      plan.steps.map((s) => [s.site, s.remove]),
      [['projector', 11]],
    );
    const log: StepRecord[] = [];
    const out = runStep(plan.steps[0], projectorView(), log);
    assert.equal(out.count, 5);
    assert.equal(log[0].correlation.receivers.length, 0);
    // Hidden value i is patch i: each kept token still holds exactly its own patch.
    out.spans[0].tokenPatch.forEach((patch, i) => assert.equal(out.hidden[i], patch));
  });

  test('the same seed keeps the same tokens; different seeds keep different ones', () => {
    assert.deepEqual(keptPatches(3), keptPatches(3));
    const choices = new Set([0, 1, 2, 3, 4].map((seed) => keptPatches(seed).join(',')));
    assert.ok(choices.size > 1, 'five seeds all kept the same tokens');
  });

  test('the passes of a tiled image each draw their own tokens; an untiled image draws as pass 0', () => {
    assert.deepEqual(keptPatches(3, 0), keptPatches(3));
    const draws = new Set([0, 1, 2, 3, 4].map((pass) => keptPatches(3, pass).join(',')));
    assert.equal(draws.size, 5, 'five passes kept the same tokens');
    assert.deepEqual(keptPatches(3, 2), keptPatches(3, 2));
  });
});
