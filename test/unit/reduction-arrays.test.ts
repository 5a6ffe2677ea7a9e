import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cosineToRow, dot, firstNaN, matmul, norm, rangeSum, rowDot, selectRows } from '../../src/reduction/arrays';

/** Row `i` of a row-major [rows, width] matrix. */
function row(matrix: Float32Array, width: number, i: number): Float32Array {
  return matrix.subarray(i * width, (i + 1) * width);
}

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

test('matmul over more columns than one block and more inner terms than four matches the plain sum', () => {
  const [rows, inner, cols] = [3, 11, 2500];
  // Row 1 has zeros among its factors, where B holds infinities: they must add nothing.
  const a = Float64Array.from({ length: rows * inner }, (_, i) =>
    (i % inner) % 4 === 1 && i >= inner ? 0 : Math.sin(i),
  );
  const b = Float64Array.from({ length: inner * cols }, (_, i) =>
    Math.floor(i / cols) % 4 === 1 ? Infinity : Math.cos(i),
  );
  b.fill(0.5, 0, cols); // row 0 of B finite for everyone
  const product = matmul(a, b, rows, inner, cols);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      let sum = 0;
      for (let k = 0; k < inner; k++) if (a[i * inner + k] !== 0) sum += a[i * inner + k] * b[k * cols + j];
      const got = product[i * cols + j];
      if (Number.isFinite(sum)) assert.ok(Math.abs(got - sum) <= 1e-12 * (1 + Math.abs(sum)), `C[${i}, ${j}]`);
      else assert.equal(got, sum, `C[${i}, ${j}]`);
    }
  assert.ok(product.subarray(cols, 2 * cols).every(Number.isFinite), 'the row whose factors skip the infinities');
});

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

test('cosineToRow is the plain cosine of a vector and a matrix row, to the bit, and 0 against a zero row', () => {
  const width = 7;
  const v = Float64Array.from({ length: width }, (_, d) => Math.sin(d + 0.5) / 3);
  const matrix = Float32Array.from({ length: 3 * width }, (_, i) => (i < 2 * width ? Math.cos(i * 1.7) : 0));
  for (const i of [0, 1]) {
    const m = row(matrix, width, i);
    assert.equal(cosineToRow(v, norm(v), matrix, i), dot(v, m) / (norm(v) * norm(m)), `row ${i}`);
  }
  assert.equal(cosineToRow(v, norm(v), matrix, 2), 0);
});

test('firstNaN finds the first NaN wherever it falls among the four it tests at once or past them, not ±∞', () => {
  const values = Float32Array.from({ length: 11 }, (_, i) => (i % 3 === 0 ? -Infinity : i === 4 ? Infinity : i));
  assert.equal(firstNaN(values), -1);
  for (const at of [0, 1, 2, 3, 5, 8, 9, 10]) {
    const poisoned = values.slice();
    poisoned[at] = NaN;
    poisoned[10] = NaN;
    assert.equal(firstNaN(poisoned), at, `NaN at ${at}`);
  }
  assert.equal(firstNaN(new Float32Array(0)), -1);
});

test('rangeSum adds the values it is given and no others, whatever the count past a multiple of four', () => {
  const values = Float32Array.from({ length: 40 }, (_, i) => 2 ** (i % 20));
  for (const [from, count] of [
    [0, 0],
    [3, 1],
    [5, 4],
    [2, 7],
    [9, 30],
  ]) {
    let expected = 0;
    for (let i = from; i < from + count; i++) expected += values[i];
    assert.equal(rangeSum(values, from, count), expected, `from ${from}, ${count} values`);
  }
});

test('selectRows copies the rows asked for, in the order asked, runs of consecutive rows and single ones alike', () => {
  const width = 3;
  const matrix = Float32Array.from({ length: 8 * width }, (_, i) => i);
  for (const keep of [[0, 1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 6], [7, 0, 1], [5], []]) {
    const expected = keep.flatMap((r) => [0, 1, 2].map((d) => r * width + d));
    assert.deepEqual([...selectRows(matrix, width, keep)], expected, keep.join(','));
  }
});
