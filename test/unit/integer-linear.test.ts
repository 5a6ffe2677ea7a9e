import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ElemType, GraphBuilder } from '../../src/engine/graph/builder';
import { linear } from '../../src/engine/graph/ops';
import type { QuantizedLinear } from '../../src/engine/weights/quantizedCache';
import { channelsAsBlocks, dequantizeChannels, quantizeChannels } from '../../src/engine/weights/quantize';

/** 160 inputs: one full block of 128 for MatMulNBits and a padded one */
const [IN, OUT] = [160, 6];
const pseudoRandom = (length: number, seed: number) =>
  Float32Array.from({ length }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 0.8);
const W = quantizeChannels(pseudoRandom(OUT * IN, 3), OUT, IN);
/** W as the products multiply by it, [OUT, IN] */
const W_DEQUANTIZED = dequantizeChannels(W);
const ROW_BLOCKS = channelsAsBlocks(W);
const BIAS = pseudoRandom(OUT, 5);

/** Which of int8's forms the layer has: channels (many-row products), 8-bit blocks (one row), or both (a decoder's). */
type Forms = 'channels' | 'blocks' | 'both';

/**
 * y = x·Wᵀ + b through the int8 path of `linear`, on ONNX Runtime's CPU kernels; with `float16`, in a graph whose
 * compute type is float16 (what GPU providers run), x and y cast at its edges.
 */
async function integerLinear(
  x: Float32Array,
  forms: Forms,
  computeType: ElemType = ElemType.float32,
): Promise<Float32Array> {
  const g = new GraphBuilder('integer_linear', computeType);
  const half = computeType === ElemType.float16;
  const given = g.input('x', ElemType.float32, ['tokens', IN]);
  const input = half ? g.op('Cast', [given], 'x_half', { to: computeType }) : given;
  const channels = {
    data: g.input('w', ElemType.int8, [IN, OUT]),
    scales: g.input('scales', ElemType.float32, [OUT]),
    sums: g.input('sums', ElemType.float32, [OUT]),
  };
  const { bits, blockSize, blocksPerRow } = ROW_BLOCKS;
  // Float weights take the compute type, as the engine's weight scope gives them; MatMulNBits' scales are A's type.
  const asCompute = (value: string) => (half ? g.op('Cast', [value], `${value}_half`, { to: computeType }) : value);
  const blocks = {
    data: g.input('row_q', ElemType.uint8, [OUT, blocksPerRow, blockSize]),
    scales: asCompute(g.input('row_scales', ElemType.float32, [OUT * blocksPerRow])),
    bits,
    blockSize,
    inFeatures: IN,
    outFeatures: OUT,
  };
  const quantized: QuantizedLinear<string> =
    forms === 'channels' ? { channels } : forms === 'blocks' ? { blocks } : { blocks, channels };
  const biasGiven = g.input('bias', ElemType.float32, [OUT]);
  const bias = asCompute(biasGiven);
  const product = linear(g, input, { bias, quantized }, 'projection');
  const output = half ? g.op('Cast', [product], 'y_float', { to: ElemType.float32 }) : product;
  g.output('y', output, ElemType.float32, ['tokens', OUT]);
  const session = await ort.InferenceSession.create(g.build());
  const feeds: Record<string, ort.Tensor> = {
    x: new ort.Tensor('float32', x, [x.length / IN, IN]),
    w: new ort.Tensor('int8', W.data, [IN, OUT]),
    scales: new ort.Tensor('float32', W.scales, [OUT]),
    sums: new ort.Tensor('float32', W.sums, [OUT]),
    row_q: new ort.Tensor('uint8', ROW_BLOCKS.data, [OUT, blocksPerRow, blockSize]),
    row_scales: new ort.Tensor('float32', ROW_BLOCKS.scales, [OUT * blocksPerRow]),
    bias: new ort.Tensor('float32', BIAS, [OUT]),
  };
  const { y } = await session.run(Object.fromEntries(session.inputNames.map((name) => [name, feeds[name]])));
  await session.release();
  return y.data as Float32Array;
}

/** x·Wᵀ + b in float64 with the dequantized weights. */
function reference(x: Float32Array): Float64Array {
  const w = W_DEQUANTIZED;
  const tokens = x.length / IN;
  const y = new Float64Array(tokens * OUT);
  for (let t = 0; t < tokens; t++)
    for (let o = 0; o < OUT; o++) {
      let sum = BIAS[o];
      for (let i = 0; i < IN; i++) sum += x[t * IN + i] * w[o * IN + i];
      y[t * OUT + o] = sum;
    }
  return y;
}

/** Σ_i |w_oi|·step_i/2 (+ float32 rounding): how far quantizing x with those steps can move output o. */
function quantizationBound(o: number, stepOf: (i: number) => number): number {
  const w = W_DEQUANTIZED.subarray(o * IN, (o + 1) * IN);
  return w.reduce((sum, v, i) => sum + (Math.abs(v) * stepOf(i)) / 2, 0) + 1e-4;
}

/** Three tokens: ordinary values, all zeros (the bias, not NaN), and 100× larger positive ones, like SiLU's outputs. */
function threeTokens(seed: number): Float32Array {
  const x = pseudoRandom(3 * IN, seed);
  x.fill(0, IN, 2 * IN);
  for (let i = 2 * IN; i < 3 * IN; i++) x[i] = 100 * Math.abs(x[i]);
  return x;
}

test('int8 linear: a token whose values are whole steps of its scale is multiplied exactly', async () => {
  // Values (k − 100)/64 with k from 0 to 255, both ends present: the token's step is 1/64, its zero point 100, and
  // every value is on its grid.
  const x = Float32Array.from({ length: IN }, (_, i) => ([0, 255][i] ?? (i * 37) % 256) - 100).map((k) => k / 64);
  const y = await integerLinear(x, 'channels');
  const expected = reference(x);
  for (let o = 0; o < OUT; o++)
    assert.ok(Math.abs(y[o] - expected[o]) < 1e-4, `output ${o}: ${y[o]} vs ${expected[o]}`);
});

test('int8 linear: each token is quantized with its own step and zero point, within half a step of each value', async () => {
  const x = threeTokens(9);
  const y = await integerLinear(x, 'channels');
  const expected = reference(x);
  for (let t = 0; t < 3; t++) {
    const row = x.subarray(t * IN, (t + 1) * IN);
    const step = (Math.max(0, ...row) - Math.min(0, ...row)) / 255;
    for (let o = 0; o < OUT; o++) {
      const error = Math.abs(y[t * OUT + o] - expected[t * OUT + o]);
      const bound = quantizationBound(o, () => step);
      assert.ok(error <= bound, `token ${t}, output ${o}: off by ${error}, bound ${bound}`);
    }
  }
  assert.deepEqual(Array.from(y.subarray(OUT, 2 * OUT)), Array.from(BIAS));
});

test('int8 linear in 8-bit blocks (one row): the same weights, activations quantized per block of 128', async () => {
  const x = threeTokens(11);
  for (let t = 0; t < 3; t++) {
    const row = x.slice(t * IN, (t + 1) * IN);
    const y = await integerLinear(row, 'blocks');
    const expected = reference(row);
    // MatMulNBits' accuracy level 4: each block of 128 inputs in int8 with its own symmetric step max|x|/127.
    const blockStep = (i: number) => {
      const from = i - (i % ROW_BLOCKS.blockSize);
      return Math.max(...row.subarray(from, from + ROW_BLOCKS.blockSize).map(Math.abs)) / 127;
    };
    for (let o = 0; o < OUT; o++) {
      const error = Math.abs(y[o] - expected[o]);
      const bound = quantizationBound(o, blockStep);
      assert.ok(error <= bound, `token ${t}, output ${o}: off by ${error}, bound ${bound}`);
    }
    if (t === 1) assert.deepEqual(Array.from(y), Array.from(BIAS));
  }
});

test('int8 linear with both forms: one row goes through the blocks, several rows through the channels', async () => {
  const x = threeTokens(13);
  assert.deepEqual(await integerLinear(x, 'both'), await integerLinear(x, 'channels'));
  const row = x.slice(2 * IN);
  assert.deepEqual(await integerLinear(row, 'both'), await integerLinear(row, 'blocks'));
  assert.notDeepEqual(await integerLinear(row, 'blocks'), await integerLinear(row, 'channels'));
});

test('int8 linear in a float16 graph: activations are quantized in float32, the result as in float32', async () => {
  const x = pseudoRandom(3 * IN, 13);
  for (const rows of [x, x.slice(0, IN)]) {
    const [single, half] = [await integerLinear(rows, 'both'), await integerLinear(rows, 'both', ElemType.float16)];
    for (let i = 0; i < single.length; i++)
      assert.ok(
        Math.abs(half[i] - single[i]) <= 2e-3 * Math.max(1, Math.abs(single[i])),
        `${rows.length / IN} rows, ${i}: ${half[i]} vs ${single[i]}`,
      );
  }
});
