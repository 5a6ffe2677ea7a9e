import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withoutStructure } from '../../src/engine/structureTokens';
import { SiteView, selectTokens } from '../../src/reduction/tokenState';

/** text, then an image of 4 content tokens with a row end after each pair, then text: t c c ⏎ c c ⏎ t */
function view(): SiteView {
  const count = 8;
  return {
    hidden: Float32Array.from({ length: count }, (_, i) => i),
    count,
    width: 1,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [
      {
        start: 1,
        count: 6,
        grid: { rows: 1, cols: 4 },
        patchOwner: Int32Array.of(1, 2, 4, 5),
        tokenPatch: Int32Array.of(0, 1, -1, 2, 3, -1),
      },
    ],
    site: 'llm:1',
    attention: Float32Array.from({ length: count * count }, (_, i) => i),
    keyCount: count,
    hasClassToken: false,
  };
}
const ROW_ENDS = Uint8Array.of(0, 0, 0, 1, 0, 0, 1, 0);

test('a decoder hook sees an image without its row ends, and they go back between the tokens it kept', () => {
  const { view: content, restore } = withoutStructure(view(), ROW_ENDS);
  assert.equal(content.count, 6);
  assert.deepEqual([...content.hidden], [0, 1, 2, 4, 5, 7]);
  assert.deepEqual(content.spans[0].start, 1);
  assert.deepEqual([...content.spans[0].tokenPatch], [0, 1, 2, 3]);
  // Attention loses the row ends' rows and columns: row 4 (old 4) reads old columns 0, 1, 2, 4, 5, 7.
  assert.deepEqual([...content.attention!.subarray(3 * 6, 4 * 6)], [32, 33, 34, 36, 37, 39]);
  const kept = [0, 1, 2, 4, 5, 7];
  assert.deepEqual(
    [...content.attention!],
    kept.flatMap((row) => kept.map((column) => row * 8 + column)),
  );
  // The hook keeps content tokens 0, 1, 3, 5: old 0 (text), 1 (patch 0), 4 (patch 2), 7 (text).
  const { state, structure } = restore(selectTokens(content, [0, 1, 3, 5]));
  assert.deepEqual([...state.hidden], [0, 1, 3, 4, 6, 7]);
  assert.deepEqual([...structure], [0, 0, 1, 0, 1, 0]);
  assert.deepEqual([...state.positions], [0, 1, 3, 4, 6, 7]);
  const [span] = state.spans;
  assert.equal(span.start, 1);
  assert.equal(span.count, 4);
  assert.deepEqual([...span.tokenPatch], [0, -1, 2, -1]);
  assert.deepEqual([...span.patchOwner], [1, -1, 3, -1]);
});

test('structure tokens at both ends of the sequence leave their rows and columns too', () => {
  const ends = Uint8Array.of(1, 0, 0, 1, 0, 0, 0, 1);
  const { view: content } = withoutStructure({ ...view(), spans: [] }, ends);
  const kept = [1, 2, 4, 5, 6];
  assert.deepEqual(
    [...content.attention!],
    kept.flatMap((row) => kept.map((column) => row * 8 + column)),
  );
  assert.deepEqual([...content.hidden], kept);
});

test('signals gathered over the content pass through as they are, whichever signals the hook asked for', () => {
  // As the engine's decoder segments give them: a hidden-cosine matrix over the 6 content tokens and no attention,
  // so nothing in the view tells the signals' size by its keys (keyCount falls back to the 8 tokens).
  const hiddenCosine = Float32Array.from({ length: 36 }, (_, i) => i);
  const { view: content } = withoutStructure({ ...view(), attention: undefined, hiddenCosine }, ROW_ENDS, {
    signalsOverContent: true,
  });
  assert.equal(content.hiddenCosine, hiddenCosine);
  assert.equal(content.keyCount, 6);
  assert.deepEqual([...content.hidden], [0, 1, 2, 4, 5, 7]);
});
