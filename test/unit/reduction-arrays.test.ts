import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dot, matmul, row, rowDot } from '../../src/reduction/arrays';

test(
  'matmul multiplies row-major matrices, and a zero factor skips its row of B (so Infinity there does ' +
    'not turn into NaN)',
  () => {
    const a = Float64Array.of(1, 2, 0, 3, 0, 1);
    const b = Float64Array.of(1, 0, 2, 1, Infinity, 5);
    // [1 2 0] · B = [1 + 2·2, 0 + 2·1] = [5, 2]; [3 0 1] · B = [3 + Infinity, 0 + 5]
    assert.deepEqual(Array.from(matmul(a, b, 2, 3, 2)), [5, 2, Infinity, 5]);
  },
);

test('rowDot multiplies two rows of a matrix, the width past its last multiple of four included', () => {
  for (const width of [1, 4, 7, 9]) {
    const matrix = Float32Array.from({ length: 3 * width }, (_, i) => ((i * 37) % 11) - 5);
    for (const [i, j] of [
      [0, 2],
      [1, 1],
      [2, 0],
    ])
      assert.equal(rowDot(matrix, width, i, j), dot(row(matrix, width, i), row(matrix, width, j)), `width ${width}`);
  }
});
