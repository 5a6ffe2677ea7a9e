import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytesApart } from '../../src/common/bytes';

test('two sizes a message compares read apart, with no more decimals than that takes', () => {
  assert.deepEqual(formatBytesApart(5e9, 4e9), ['5.0 GB', '4.0 GB']);
  assert.deepEqual(formatBytesApart(4_420_000, 4_380_000), ['4.42 MB', '4.38 MB']);
  // A byte apart: "needs 4.4 MB more on disk, but … has 4.4 MB free" told the user nothing.
  assert.deepEqual(formatBytesApart(4_403_456, 4_403_455), ['4.403456 MB', '4.403455 MB']);
  assert.deepEqual(formatBytesApart(12_000_000_000, 999_000_000), ['12 GB', '999 MB']);
});
