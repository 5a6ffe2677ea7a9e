import assert from 'node:assert/strict';
import { test } from 'node:test';
import { equalChunkTokens, promptChunkTokens } from '../../src/engine/promptChunks';

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

test('a prompt goes in equal chunks, as many as the nearest whole number of the largest allowed', () => {
  assert.equal(equalChunkTokens(2048, 256), 256);
  // 276 tokens are one run of 276, not 256 and then 20 that read every weight again.
  assert.equal(equalChunkTokens(276, 256), 276);
  assert.equal(equalChunkTokens(616, 256), 308);
  assert.equal(equalChunkTokens(7309, 256), 253);
  assert.equal(equalChunkTokens(40, 256), 40);
  for (let tokens = 1; tokens < 3000; tokens++) {
    const chunk = equalChunkTokens(tokens, 256);
    assert.ok(
      chunk <= 1.5 * 256 && Math.ceil(tokens / chunk) * chunk - tokens < Math.ceil(tokens / chunk),
      `${tokens}`,
    );
  }
});
