import assert from 'node:assert/strict';
import { test } from 'node:test';
import { promptChunkTokens } from '../../src/engine/engine';

// LLaVA-OneVision-0.5B's decoder (14 query heads) on a 1080p screenshot's prompt.
const HEADS = 14;
const KEYS = 7309;

test('a whole decoder takes a long prompt in chunks of the limit', () => {
  assert.equal(promptChunkTokens(1024, 1, HEADS, KEYS), 1024);
});

test('a decoder cut into more segments takes shorter chunks, so their arenas together stay bounded', () => {
  const four = promptChunkTokens(1024, 4, HEADS, KEYS);
  assert.ok(four < 1024 && four > 256, `four segments: ${four} rows`);
  const logitsBytes = (rows: number) => HEADS * rows * KEYS * 4;
  assert.ok(4 * logitsBytes(four) <= 2 ** 30);
  assert.ok(4 * logitsBytes(four + 1) > 2 ** 30, 'the share is used, not undercut');
});

test('chunks never go below the rows where products stay efficient, nor above the limit asked for', () => {
  assert.equal(promptChunkTokens(1024, 21, HEADS, KEYS), 256);
  assert.equal(promptChunkTokens(7, 21, HEADS, KEYS), 7);
  assert.equal(promptChunkTokens(1024, 1, HEADS, 40), 1024);
});
