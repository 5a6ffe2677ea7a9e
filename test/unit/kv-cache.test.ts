import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ElemType } from '../../src/engine/graph/builder';
import { pastName, presentName } from '../../src/engine/graph/segment';
import { KvCache, SLOT_BLOCK } from '../../src/engine/runtime/kvCache';

const KV_HEADS = 2;
const HEAD_DIM = 3;

/** A segment's present.l{layer}.* for `tokens` new rows: keys hold head·1000 + token·10 + d, values their negation. */
function present(layer: number, firstToken: number, tokens: number): Record<string, ort.Tensor> {
  const keys = new Float32Array(KV_HEADS * tokens * HEAD_DIM);
  for (let h = 0; h < KV_HEADS; h++)
    for (let t = 0; t < tokens; t++)
      for (let d = 0; d < HEAD_DIM; d++) keys[(h * tokens + t) * HEAD_DIM + d] = h * 1000 + (firstToken + t) * 10 + d;
  const dims = [KV_HEADS, tokens, HEAD_DIM];
  return {
    [presentName(layer, 'keys')]: new ort.Tensor('float32', keys, dims),
    [presentName(layer, 'values')]: new ort.Tensor(
      'float32',
      keys.map((v) => -v),
      dims,
    ),
  };
}

describe('KvCache', () => {
  test('appends rows into spare slots, grows by whole blocks keeping every row in place, and masks the spare slots', () => {
    const cache = new KvCache(KV_HEADS, HEAD_DIM, ElemType.float32);
    cache.update([0], present(0, 0, 200));
    let feeds = cache.feeds([0], 1);
    assert.deepEqual(feeds[pastName(0, 'keys')].dims, [KV_HEADS, SLOT_BLOCK, HEAD_DIM]);
    cache.update([0], present(0, 200, 100)); // crosses the first block
    for (let t = 300; t < 310; t++) cache.update([0], present(0, t, 1));
    assert.deepEqual(cache.lengths(), [310]);

    feeds = cache.feeds([0], 4);
    const slots = 2 * SLOT_BLOCK;
    assert.deepEqual(feeds[pastName(0, 'keys')].dims, [KV_HEADS, slots, HEAD_DIM]);
    const keys = feeds[pastName(0, 'keys')].data as Float32Array;
    const values = feeds[pastName(0, 'values')].data as Float32Array;
    for (let h = 0; h < KV_HEADS; h++)
      for (let t = 0; t < 310; t++)
        for (let d = 0; d < HEAD_DIM; d++) {
          const at = (h * slots + t) * HEAD_DIM + d;
          assert.equal(keys[at], h * 1000 + t * 10 + d, `head ${h} token ${t}`);
          assert.equal(values[at], -keys[at]);
        }
    const mask = feeds[pastName(0, 'mask')].data as Float32Array;
    assert.equal(mask.length, slots + 4, 'one entry per slot, then one per new token');
    assert.ok(mask.subarray(0, 310).every((v) => v === 0));
    assert.ok(mask.subarray(310, slots).every((v) => v === -3.4028234663852886e38));
    assert.ok(mask.subarray(slots).every((v) => v === 0));
  });

  test('layers hold their own lengths, and float16 masks use float16 lowest', () => {
    const cache = new KvCache(KV_HEADS, HEAD_DIM, ElemType.float16);
    const half = (layer: number, tokens: number) =>
      Object.fromEntries(
        Object.entries(present(layer, 0, tokens)).map(([name, tensor]) => [
          name,
          new ort.Tensor('float16', new Uint16Array(tensor.data.length), tensor.dims),
        ]),
      );
    cache.update([0], half(0, 40));
    cache.update([1], half(1, 12)); // a reduction before layer 1 left fewer tokens
    assert.deepEqual(cache.lengths(), [40, 12]);
    const feeds = cache.feeds([0, 1, 2], 1);
    assert.equal(feeds[pastName(0, 'keys')].type, 'float16');
    const mask = feeds[pastName(1, 'mask')].data as Uint16Array;
    assert.deepEqual([mask[11], mask[12], mask[SLOT_BLOCK - 1], mask[SLOT_BLOCK]], [0, 0xfbff, 0xfbff, 0]);
    assert.deepEqual(feeds[pastName(2, 'keys')].dims, [KV_HEADS, 0, HEAD_DIM], 'a layer not run yet is empty');
    assert.equal(feeds[pastName(2, 'mask')].dims[0], 1);
  });
});
