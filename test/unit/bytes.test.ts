import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytesApart, formatGibibytes } from '../../src/common/bytes';

test('two sizes a message compares read apart, with no more decimals than that takes', () => {
  assert.deepEqual(formatBytesApart(5e9, 4e9), ['5.0 GB', '4.0 GB']);
  assert.deepEqual(formatBytesApart(4_420_000, 4_380_000), ['4.42 MB', '4.38 MB']);
  // A byte apart: "needs 4.4 MB more on disk, but … has 4.4 MB free" told the user nothing.
  assert.deepEqual(formatBytesApart(4_403_456, 4_403_455), ['4.403456 MB', '4.403455 MB']);
  assert.deepEqual(formatBytesApart(12_000_000_000, 999_000_000), ['12 GB', '999 MB']);
});

test('memory in GiB has two decimals below 1 GiB and one from there, the same in every message', () => {
  assert.equal(formatGibibytes(0.45 * 2 ** 30), '0.45 GiB');
  assert.equal(formatGibibytes(40 * 2 ** 20), '0.04 GiB');
  assert.equal(formatGibibytes(2 ** 30), '1.0 GiB');
  assert.equal(formatGibibytes(4.1 * 2 ** 30), '4.1 GiB');
  // Binary units: 28 GB of float32 weights is 26.1 GiB, not 28.0.
  assert.equal(formatGibibytes(28e9), '26.1 GiB');
});
