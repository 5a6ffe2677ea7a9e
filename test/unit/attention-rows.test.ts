import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { attention } from '../../src/engine/graph/attention';
import { causalTriangle, dimension } from '../../src/engine/graph/ops';
import { ElemType, GraphBuilder } from '../../src/engine/graph/builder';

// Four query heads sharing two KV heads (grouped-query attention), head size 2, hidden width 8.
const HEADS = 4;
const KV_HEADS = 2;
const HEAD_DIM = 2;
const WIDTH = HEADS * HEAD_DIM;
const KV_WIDTH = KV_HEADS * HEAD_DIM;

const pseudoRandom = (length: number, seed: number) =>
  Float32Array.from({ length }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 0.8);
const X = pseudoRandom(7 * WIDTH, 1); // seven tokens
const WEIGHTS = {
  q: pseudoRandom(WIDTH * WIDTH, 2),
  k: pseudoRandom(KV_WIDTH * WIDTH, 3),
  v: pseudoRandom(KV_WIDTH * WIDTH, 4),
};

/** One causal attention layer over `x`, with a cache of `slots` rows when `past` is set; outputs what it exposes. */
async function run(
  x: Float32Array,
  expose: 'logits' | 'probs',
  past?: { keys: Float32Array; values: Float32Array; slots: number; mask: Float32Array },
): Promise<ort.InferenceSession.OnnxValueMapType> {
  const g = new GraphBuilder('attention');
  const input = g.input('x', ElemType.float32, ['tokens', WIDTH]);
  const weight = (name: 'q' | 'k' | 'v', out: number) => ({ weight: g.constant(name, WEIGHTS[name], [out, WIDTH]) });
  const cache = past && {
    keys: g.input('past_keys', ElemType.float32, [KV_HEADS, 'slots', HEAD_DIM]),
    values: g.input('past_values', ElemType.float32, [KV_HEADS, 'slots', HEAD_DIM]),
    mask: g.input('mask', ElemType.float32, ['keys']),
  };
  const result = attention(
    g,
    input,
    { q: weight('q', WIDTH), k: weight('k', KV_WIDTH), v: weight('v', KV_WIDTH), o: weight('q', WIDTH) },
    { heads: HEADS, kvHeads: KV_HEADS, headDim: HEAD_DIM },
    {
      causal: causalTriangle(g, dimension(g, input, 0, 'tokens'), 'causal'),
      expose: { attention: expose },
      ...(cache ? { past: cache } : {}),
    },
    'attn',
  );
  for (const [name, value] of Object.entries({
    attention: result.attention,
    query_rows: result.queryRows,
    key_rows: result.keyRows,
    new_keys: result.newKeys,
    new_values: result.newValues,
  }))
    if (value) g.output(name, value, ElemType.float32, ['a', 'b', 'c'].slice(0, name.startsWith('new') ? 3 : 2));
  const session = await ort.InferenceSession.create(g.build());
  const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [x.length / WIDTH, WIDTH]) };
  if (past) {
    feeds.past_keys = new ort.Tensor('float32', past.keys, [KV_HEADS, past.slots, HEAD_DIM]);
    feeds.past_values = new ort.Tensor('float32', past.values, [KV_HEADS, past.slots, HEAD_DIM]);
    feeds.mask = new ort.Tensor('float32', past.mask, [past.mask.length]);
  }
  const outputs = await session.run(feeds);
  await session.release();
  return outputs;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(actual[i] - expected[i]) < 1e-5, `${what} at ${i}`);
}

/** [heads, 3, d] rows of the first three tokens placed in a cache of 5 slots, the last two spare. */
async function cacheOfFirstThree() {
  const first = await run(X.subarray(0, 3 * WIDTH), 'probs', {
    keys: new Float32Array(0),
    values: new Float32Array(0),
    slots: 0,
    mask: new Float32Array(3),
  });
  const slots = 5;
  const place = (rows: Float32Array) => {
    const cache = new Float32Array(KV_HEADS * slots * HEAD_DIM).fill(7); // spare slots hold garbage
    for (let h = 0; h < KV_HEADS; h++)
      cache.set(rows.subarray(h * 3 * HEAD_DIM, (h + 1) * 3 * HEAD_DIM), h * slots * HEAD_DIM);
    return cache;
  };
  const mask = new Float32Array(slots + 4).fill(-3.4028234663852886e38, 3, slots);
  return {
    keys: place(first.new_keys.data as Float32Array),
    values: place(first.new_values.data as Float32Array),
    slots,
    mask,
  };
}

test('with a cache, the unmasked head-mean logits are the product of the rows a run exposes', async () => {
  const whole = await run(X, 'logits');
  const rows = await run(X, 'logits', {
    keys: new Float32Array(0),
    values: new Float32Array(0),
    slots: 0,
    mask: new Float32Array(7),
  });
  assert.equal(rows.attention, undefined);
  const queries = rows.query_rows.data as Float32Array;
  const keys = rows.key_rows.data as Float32Array;
  assert.deepEqual(rows.key_rows.dims, [7, KV_WIDTH]);
  const product = new Float32Array(49);
  for (let i = 0; i < 7; i++)
    for (let j = 0; j < 7; j++)
      for (let c = 0; c < KV_WIDTH; c++) product[i * 7 + j] += queries[i * KV_WIDTH + c] * keys[j * KV_WIDTH + c];
  assertClose(product, whole.attention.data as Float32Array, 'logits');
});

test("a run after three cached tokens gives its rows of the whole prompt's probabilities, spare slots at zero", async () => {
  const whole = (await run(X, 'probs')).attention.data as Float32Array;
  const past = await cacheOfFirstThree();
  const rows = await run(X.subarray(3 * WIDTH), 'probs', past);
  const probs = rows.attention.data as Float32Array;
  assert.deepEqual(rows.attention.dims, [4, past.slots + 4]);
  for (let r = 0; r < 4; r++) {
    const row = probs.subarray(r * 9, (r + 1) * 9);
    const expected = whole.subarray((3 + r) * 7, (4 + r) * 7);
    assertClose([...row.subarray(0, 3), ...row.subarray(5)], expected, `row ${3 + r}`);
    assert.deepEqual([row[3], row[4]], [0, 0], 'spare slots get no attention');
  }
});
