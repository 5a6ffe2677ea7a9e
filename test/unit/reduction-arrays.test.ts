import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matmul } from '../../src/reduction/arrays';

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
