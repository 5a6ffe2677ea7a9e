import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';

const GRID = { rows: 2, cols: 2 };
const shape = (textLayers: number) => ({
  visionLayers: 24,
  textLayers,
  visualTokens: 4,
  grid: GRID,
  hasClassToken: true,
});

/** Decoder site: text 0, image tokens 1…4 (patches 0…3, hidden [i, 0]), text 5, 6; attention rows as given. */
function decoderView(attentionRows: number[][]): SiteView {
  const count = 7;
  return {
    site: 'llm:1',
    hidden: Float32Array.from({ length: count * 2 }, (_, k) => (k % 2 === 0 ? k / 2 : 0)),
    count,
    width: 2,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [
      { start: 1, count: 4, grid: GRID, patchOwner: Int32Array.of(1, 2, 3, 4), tokenPatch: Int32Array.of(0, 1, 2, 3) },
    ],
    attention: Float32Array.from(attentionRows.flat()),
    keyCount: count,
    hasClassToken: false,
  };
}

// Column means over all 7 queries for image tokens 1…4: 0.2, 0.1, 0.3, 0.1 → tokens 3 and 1 are attended most.
// The last row alone prefers tokens 2 and 4, so a last-token score would keep the other pair.
const ATTENTION = [
  [1, 0, 0, 0, 0, 0, 0],
  [0.3, 0.7, 0, 0, 0, 0, 0],
  [0.1, 0.3, 0.6, 0, 0, 0, 0],
  [0.1, 0.2, 0, 0.7, 0, 0, 0],
  [0.2, 0.1, 0, 0.6, 0.1, 0, 0],
  [0.1, 0.1, 0, 0.8, 0, 0, 0],
  [0, 0, 0.1, 0, 0.6, 0.1, 0.2],
];

describe('FastV', () => {
  test('is one pruning step at llm:(K−1) reading attention probabilities, K−1 = 1 of 32 scaled to the depth', () => {
    for (const [layers, site] of [
      [32, 'llm:1'],
      [40, 'llm:1'],
      [24, 'llm:1'],
      [80, 'llm:3'],
      [6, 'llm:0'],
    ] as const) {
      const { steps } = planReduction('fastv', { tokens: 1 }, shape(layers));
      assert.equal(steps.length, 1);
      assert.equal(steps[0].site, site);
      assert.deepEqual(steps[0].needs, { attention: 'probs' });
      assert.equal(steps[0].remove, 3);
    }
  });

  test('keeps the image tokens with the highest attention received, averaged over every query, with their positions', () => {
    const { steps } = planReduction('fastv', { tokens: 2 }, shape(32));
    const out = runStep(steps[0], decoderView(ATTENTION));
    assert.equal(out.count, 5);
    assert.deepEqual(Array.from(out.positions), [0, 1, 3, 5, 6]);
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [0, 2]);
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [1, -1, 2, -1]);
    assert.deepEqual(Array.from(out.hidden.filter((_, k) => k % 2 === 0)), [0, 1, 3, 5, 6]);
  });

  test("queries: 'last' ranks by the last token's row alone, as FastV's released code", () => {
    const { steps } = planReduction('fastv', { tokens: 2 }, shape(32), { queries: 'last' });
    const out = runStep(steps[0], decoderView(ATTENTION));
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [1, 3]);
    assert.deepEqual(Array.from(out.positions), [0, 2, 4, 5, 6]);
  });

  test('the budget is the number of image tokens kept', () => {
    assert.equal(
      planReduction('fastv', { ratio: 0.5 }, { ...shape(32), visualTokens: 576, grid: { rows: 24, cols: 24 } }).steps[0]
        .remove,
      288,
    );
  });
});
