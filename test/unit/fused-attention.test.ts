import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { attention } from '../../src/engine/graph/attention';
import { causalTriangle, dimension } from '../../src/engine/graph/ops';
import { ElemType, GraphBuilder, lowestFloat } from '../../src/engine/graph/builder';
import type { AttentionNeeds } from '../../src/reduction/tokenState';
import { maxAbsDiff } from '../helpers/assertions';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();

const [TOKENS, HIDDEN, HEADS, KV_HEADS, SLOTS, IN_USE] = [5, 24, 4, 2, 16, 10];
const pseudoRandom = (length: number, seed: number, scale = 0.5) =>
  Float32Array.from({ length }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * scale);

interface Attended {
  out: Float32Array;
  /** the op types ONNX Runtime ran, from its profile */
  ran: Set<string>;
  /** with unmasked logits exposed: the factors [TOKENS, KV_HEADS·headDim] of the run's head-mean logits */
  queryRows?: Float32Array;
  keyRows?: Float32Array;
}

/**
 * One causal attention block over a cache of SLOTS slots, IN_USE of them in use and the spare ones holding large
 * values the mask must hide; `promptChunk` is fed as the run's choice of the fused branch.
 */
async function attend(headDim: number, promptChunk: boolean, expose?: AttentionNeeds): Promise<Attended> {
  const width = (heads: number) => heads * headDim;
  const g = new GraphBuilder('attention');
  const x = g.input('x', ElemType.float32, [TOKENS, HIDDEN]);
  const weight = (name: string, out: number) => g.input(name, ElemType.float32, [out, HIDDEN]);
  const result = attention(
    g,
    x,
    {
      q: { weight: weight('wq', width(HEADS)) },
      k: { weight: weight('wk', width(KV_HEADS)) },
      v: { weight: weight('wv', width(KV_HEADS)) },
      o: { weight: g.input('wo', ElemType.float32, [HIDDEN, width(HEADS)]) },
    },
    { heads: HEADS, kvHeads: KV_HEADS, headDim },
    {
      causal: causalTriangle(g, dimension(g, x, 0, 'tokens'), 'causal'),
      expose,
      past: {
        keys: g.input('past_keys', ElemType.float32, [KV_HEADS, SLOTS, headDim]),
        values: g.input('past_values', ElemType.float32, [KV_HEADS, SLOTS, headDim]),
        mask: g.input('past_mask', ElemType.float32, [SLOTS + TOKENS]),
        promptChunk: g.input('prompt_chunk', ElemType.bool, []),
      },
    },
    'attn',
  );
  g.output('out', result.out, ElemType.float32, [TOKENS, HIDDEN]);
  if (result.queryRows && result.keyRows) {
    g.output('query_rows', result.queryRows, ElemType.float32, [TOKENS, width(KV_HEADS)]);
    g.output('key_rows', result.keyRows, ElemType.float32, [TOKENS, width(KV_HEADS)]);
  }
  const folder = temporaryFolder('ficoco-profile-');
  const session = await ort.InferenceSession.create(g.build(), {
    enableProfiling: true,
    profileFilePrefix: path.join(folder, 'run'),
  });
  const cache = (seed: number) =>
    pseudoRandom(KV_HEADS * SLOTS * headDim, seed).map((v, i) => (Math.floor(i / headDim) % SLOTS < IN_USE ? v : 100));
  const mask = new Float32Array(SLOTS + TOKENS).fill(lowestFloat(ElemType.float32), IN_USE, SLOTS);
  const tensor = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);
  const outputs = await session.run({
    x: tensor(pseudoRandom(TOKENS * HIDDEN, 1, 1), [TOKENS, HIDDEN]),
    wq: tensor(pseudoRandom(width(HEADS) * HIDDEN, 2), [width(HEADS), HIDDEN]),
    wk: tensor(pseudoRandom(width(KV_HEADS) * HIDDEN, 3), [width(KV_HEADS), HIDDEN]),
    wv: tensor(pseudoRandom(width(KV_HEADS) * HIDDEN, 4), [width(KV_HEADS), HIDDEN]),
    wo: tensor(pseudoRandom(HIDDEN * width(HEADS), 5), [HIDDEN, width(HEADS)]),
    past_keys: tensor(cache(6), [KV_HEADS, SLOTS, headDim]),
    past_values: tensor(cache(7), [KV_HEADS, SLOTS, headDim]),
    past_mask: tensor(mask, [SLOTS + TOKENS]),
    prompt_chunk: new ort.Tensor('bool', Uint8Array.of(promptChunk ? 1 : 0), []),
  });
  session.endProfiling();
  await session.release();
  const [profile] = fs.readdirSync(folder);
  const events = JSON.parse(fs.readFileSync(path.join(folder, profile), 'utf8')) as {
    cat: string;
    args?: { op_name?: string };
  }[];
  const ran = new Set(events.filter((e) => e.cat === 'Node' && e.args?.op_name).map((e) => e.args!.op_name!));
  const rows = (name: string) => outputs[name]?.data as Float32Array | undefined;
  return { out: outputs.out.data as Float32Array, ran, queryRows: rows('query_rows'), keyRows: rows('key_rows') };
}

test('a prompt chunk attends through GroupQueryAttention and matches the explicit ops over a cache with spare slots', async () => {
  const fused = await attend(8, true);
  const explicit = await attend(8, false);
  assert.ok(fused.ran.has('GroupQueryAttention'), `ran ${[...fused.ran].join(', ')}`);
  assert.ok(!explicit.ran.has('GroupQueryAttention') && explicit.ran.has('Softmax'));
  // The spare slots hold 100s: attending to one would move the output by far more than this.
  assert.ok(maxAbsDiff(fused.out, explicit.out) < 1e-5, `differ by ${maxAbsDiff(fused.out, explicit.out)}`);
});

test('attention stays explicit where the fused op cannot serve: head sizes not a multiple of 8, exposed probabilities', async () => {
  for (const [headDim, expose] of [
    [12, undefined],
    [8, { attention: 'probs' }],
  ] as const) {
    const { ran } = await attend(headDim, true, expose);
    assert.ok(!ran.has('GroupQueryAttention') && !ran.has('If'), `head size ${headDim}: ran ${[...ran].join(', ')}`);
  }
});

test('a layer exposing unmasked logits to a hook still attends fused: it gives their factors, not the scores', async () => {
  const headDim = 8;
  const fused = await attend(headDim, true, { attention: 'logits' });
  const explicit = await attend(headDim, false);
  assert.ok(fused.ran.has('GroupQueryAttention'), `ran ${[...fused.ran].join(', ')}`);
  assert.ok(maxAbsDiff(fused.out, explicit.out) < 1e-5, `differ by ${maxAbsDiff(fused.out, explicit.out)}`);
  // The factors' product is mean_h q_h·k_h/√d over the run's own tokens, from the same inputs in float64.
  const x = pseudoRandom(TOKENS * HIDDEN, 1, 1);
  const project = (weights: Float32Array, out: number) =>
    Array.from({ length: TOKENS * out }, (_, i) => {
      const [t, o] = [Math.floor(i / out), i % out];
      let sum = 0;
      for (let j = 0; j < HIDDEN; j++) sum += x[t * HIDDEN + j] * weights[o * HIDDEN + j];
      return sum;
    });
  const q = project(pseudoRandom(HEADS * headDim * HIDDEN, 2), HEADS * headDim);
  const k = project(pseudoRandom(KV_HEADS * headDim * HIDDEN, 3), KV_HEADS * headDim);
  const width = KV_HEADS * headDim;
  const { queryRows, keyRows } = fused;
  assert.ok(queryRows && keyRows, 'the run gives both factors');
  for (let t = 0; t < TOKENS; t++)
    for (let s = 0; s < TOKENS; s++) {
      let expected = 0;
      for (let h = 0; h < HEADS; h++) {
        const kv = Math.floor(h / (HEADS / KV_HEADS));
        for (let d = 0; d < headDim; d++)
          expected += q[t * HEADS * headDim + h * headDim + d] * k[s * width + kv * headDim + d];
      }
      expected /= HEADS * Math.sqrt(headDim);
      let product = 0;
      for (let j = 0; j < width; j++) product += queryRows[t * width + j] * keyRows[s * width + j];
      assert.ok(Math.abs(product - expected) < 1e-4, `logit ${t}→${s}: ${product}, expected ${expected}`);
    }
});
