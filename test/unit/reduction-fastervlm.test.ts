import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

const GRID = { rows: 4, cols: 4 };
const SHAPE = { visionLayers: 24, textLayers: 32, visualTokens: 16, grid: GRID, hasClassToken: true };

/**
 * The `features` site of one 4×4 image: patch p has hidden [p, 1]; [CLS] (hidden [100, 100]) at index 0 when
 * `classToken`.
 */
function featuresView(attentionRows: number[][], classToken: boolean): SiteView {
  const cls = classToken ? 1 : 0;
  const count = cls + 16;
  const hidden = new Float32Array(count * 2);
  if (classToken) hidden.set([100, 100]);
  for (let p = 0; p < 16; p++) hidden.set([p, 1], (cls + p) * 2);
  return {
    site: 'features',
    hidden,
    count,
    width: 2,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [
      {
        start: cls,
        count: 16,
        grid: GRID,
        patchOwner: Int32Array.from({ length: 16 }, (_, p) => cls + p),
        tokenPatch: Int32Array.from({ length: 16 }, (_, p) => p),
      },
    ],
    attention: Float32Array.from(attentionRows.flat()),
    keyCount: count,
    hasClassToken: classToken,
  };
}

describe('FasterVLM', () => {
  test('is one pruning step at the features site that reads attention probabilities', () => {
    const { steps } = planReduction('fastervlm', { tokens: 4 }, SHAPE);
    assert.equal(steps.length, 1);
    assert.equal(steps[0].site, 'features');
    assert.deepEqual(steps[0].needs, { attention: 'probs' });
    assert.equal(steps[0].remove, 12);
  });

  test('keeps the 4 patches [CLS] attends to most and drops the rest unchanged', () => {
    // [CLS] row over [CLS] + 16 patches: patches 5, 14, 11, 0 get 9, 8, 7, 5; the rest 1.
    const clsRow = [0, 5, 1, 1, 1, 1, 9, 1, 1, 1, 1, 1, 7, 1, 1, 8, 1];
    const rows = [clsRow, ...Array.from({ length: 16 }, () => new Array<number>(17).fill(1 / 17))];
    const [step] = planReduction('fastervlm', { tokens: 4 }, SHAPE).steps;
    const out = runStep(step, featuresView(rows, true));
    assert.equal(out.count, 5);
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [0, 5, 11, 14]);
    assert.deepEqual(Array.from(out.hidden), [100, 100, 0, 1, 5, 1, 11, 1, 14, 1]);
    const owners = Array.from(out.spans[0].patchOwner);
    assert.deepEqual([owners[0], owners[5], owners[11], owners[14]], [1, 2, 3, 4]);
    assert.equal(owners.filter((o) => o === -1).length, 12);
    assert.deepEqual(Array.from(out.sizes), [1, 1, 1, 1, 1]);
  });

  test('without [CLS], ranks patches by the mean attention they receive', () => {
    // Every query gives key j the same weight c_j, so the mean received attention is c_j: patches 3, 8, 12 lead.
    const received = Array.from({ length: 16 }, (_, j) => ({ 3: 0.3, 8: 0.2, 12: 0.25 })[j] ?? 0.01);
    const [step] = planReduction('fastervlm', { tokens: 3 }, { ...SHAPE, hasClassToken: false }).steps;
    const out = runStep(
      step,
      featuresView(
        Array.from({ length: 16 }, () => received),
        false,
      ),
    );
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [3, 8, 12]);
  });

  test('on ties at the budget keeps the earlier patches, as top-k and VisionZip without contextual tokens do', () => {
    // Patches 0 and 5 lead; the other 14 tie (as half-precision probabilities often do): 1 and 2 are the earliest.
    const clsRow = [0, 0.2, 0.01, 0.01, 0.01, 0.01, 0.3, ...new Array<number>(10).fill(0.01)];
    const rows = [clsRow, ...Array.from({ length: 16 }, () => new Array<number>(17).fill(1 / 17))];
    const view = featuresView(rows, true);
    const [step] = planReduction('fastervlm', { tokens: 4 }, SHAPE).steps;
    assert.deepEqual(Array.from(runStep(step, view).spans[0].tokenPatch), [0, 1, 2, 5]);
    const [zip] = planReduction('visionzip', { tokens: 4 }, SHAPE, { contextualShare: 0 }).steps;
    assert.deepEqual(Array.from(runStep(zip, view).spans[0].tokenPatch), [0, 1, 2, 5]);
  });
});
