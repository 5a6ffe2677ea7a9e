import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

const LLAVA = {
  visionLayers: 23,
  textLayers: 32,
  visualTokens: 576,
  grid: { rows: 24, cols: 24 },
  hasClassToken: true,
};

/**
 * Decoder site: text 0, image tokens 1…4 (patches 0…3), text 5, 6 (the last instruction token); attention rows as
 * given.
 */
function decoderView(attentionRows: number[][]): SiteView {
  const count = 7;
  const grid = { rows: 2, cols: 2 };
  return {
    site: 'llm:7',
    hidden: Float32Array.from({ length: count }, (_, i) => i),
    count,
    width: 1,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => 10 + i),
    spans: [{ start: 1, count: 4, grid, patchOwner: Int32Array.of(1, 2, 3, 4), tokenPatch: Int32Array.of(0, 1, 2, 3) }],
    attention: Float32Array.from(attentionRows.flat()),
    keyCount: count,
    hasClassToken: false,
  };
}

describe('PDrop', () => {
  test(
    'drops at the stage boundaries 8, 16, 24 of 32 (sites llm:7, 15, 23), geometric so the last stage ' +
      'keeps the budget',
    () => {
      const { steps } = planReduction('pdrop', { tokens: 64 }, LLAVA);
      assert.deepEqual(
        steps.map((s) => s.site),
        ['llm:7', 'llm:15', 'llm:23'],
      );
      // 576 → 277 → 133 → 64: the same kept fraction (1/9)^(1/3) ≈ 0.48 per stage.
      assert.deepEqual(
        steps.map((s) => s.remove),
        [299, 144, 69],
      );
      assert.ok(steps.every((s) => s.needs.attention === 'probs'));
    },
  );

  test('scales the boundaries to other depths and folds stages that land on one layer', () => {
    assert.deepEqual(
      planReduction('pdrop', { tokens: 64 }, { ...LLAVA, textLayers: 40 }).steps.map((s) => s.site),
      ['llm:9', 'llm:19', 'llm:29'],
    );
    assert.deepEqual(
      planReduction('pdrop', { tokens: 64 }, { ...LLAVA, textLayers: 24 }).steps.map((s) => s.site),
      ['llm:5', 'llm:11', 'llm:17'],
    );
    const shallow = planReduction('pdrop', { tokens: 64 }, { ...LLAVA, textLayers: 2 }).steps;
    assert.deepEqual(
      shallow.map((s) => [s.site, s.remove]),
      [['llm:0', 512]],
    );
    assert.deepEqual(
      planReduction('pdrop', { tokens: 64 }, LLAVA, { stages: 1 }).steps.map((s) => [s.site, s.remove]),
      [['llm:15', 512]],
    );
  });

  test('keeps the image tokens the last instruction token attends to most, whatever the other queries do', () => {
    const { steps } = planReduction('pdrop', { tokens: 2 }, { ...LLAVA, visualTokens: 4, grid: { rows: 2, cols: 2 } });
    const uniformElsewhere = Array.from({ length: 6 }, () => [0.1, 0.5, 0.1, 0.1, 0.1, 0.05, 0.05]);
    const view = decoderView([...uniformElsewhere, [0.1, 0.05, 0.3, 0.15, 0.25, 0.1, 0.05]]);
    // Last row over image tokens 1…4: 0.05, 0.3, 0.15, 0.25 → 2 and 4 stay.
    const out = runStep({ ...steps[0], remove: 2 }, view);
    assert.deepEqual(Array.from(out.positions), [10, 12, 14, 15, 16]);
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [1, 3]);
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [-1, 1, -1, 2]);
  });
});
