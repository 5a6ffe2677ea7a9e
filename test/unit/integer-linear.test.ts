import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ElemType, GraphBuilder } from '../../src/engine/graph/builder';
import { linear } from '../../src/engine/graph/ops';
import { dequantizeChannels, quantizeChannels } from '../../src/engine/weights/quantize';

const [IN, OUT] = [40, 6];
const pseudoRandom = (length: number, seed: number) =>
  Float32Array.from({ length }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 0.8);
const W = quantizeChannels(pseudoRandom(OUT * IN, 3), OUT, IN);
const BIAS = pseudoRandom(OUT, 5);

/**
 * y = x·Wᵀ + b through the int8 path of `linear`, on ONNX Runtime's CPU kernels; with `float16`, in a graph whose
 * compute type is float16 (what GPU providers run), x and y cast at its edges.
 */
async function integerLinear(x: Float32Array, computeType: ElemType = ElemType.float32): Promise<Float32Array> {
  const g = new GraphBuilder('integer_linear', computeType);
  const half = computeType === ElemType.float16;
  const given = g.input('x', ElemType.float32, ['tokens', IN]);
  const input = half ? g.op('Cast', [given], 'x_half', { to: computeType }) : given;
  const weight = g.input('w', ElemType.int8, [IN, OUT]);
  const scales = g.input('scales', ElemType.float32, [OUT]);
  const sums = g.input('sums', ElemType.float32, [OUT]);
  const biasGiven = g.input('bias', ElemType.float32, [OUT]);
  const bias = half ? g.op('Cast', [biasGiven], 'bias_half', { to: computeType }) : biasGiven;
  const product = linear(g, input, { weight, bias, quantized: { kind: 'channels', scales, sums } }, 'projection');
  const output = half ? g.op('Cast', [product], 'y_float', { to: ElemType.float32 }) : product;
  g.output('y', output, ElemType.float32, ['tokens', OUT]);
  const session = await ort.InferenceSession.create(g.build());
  const { y } = await session.run({
    x: new ort.Tensor('float32', x, [x.length / IN, IN]),
    w: new ort.Tensor('int8', W.data, [IN, OUT]),
    scales: new ort.Tensor('float32', W.scales, [OUT]),
    sums: new ort.Tensor('float32', W.sums, [OUT]),
    bias: new ort.Tensor('float32', BIAS, [OUT]),
  });
  await session.release();
  return y.data as Float32Array;
}

/** x·Wᵀ + b in float64 with the dequantized weights. */
function reference(x: Float32Array): Float64Array {
  const w = dequantizeChannels(W);
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

test('int8 linear: a token whose values are whole steps of its scale is multiplied exactly', async () => {
  // Values (k − 100)/64 with k from 0 to 255, both ends present: the token's step is 1/64, its zero point 100, and
  // every value is on its grid.
  const x = Float32Array.from({ length: IN }, (_, i) => ([0, 255][i] ?? (i * 37) % 256) - 100).map((k) => k / 64);
  const y = await integerLinear(x);
  const expected = reference(x);
  for (let o = 0; o < OUT; o++)
    assert.ok(Math.abs(y[o] - expected[o]) < 1e-4, `output ${o}: ${y[o]} vs ${expected[o]}`);
});

test('int8 linear: each token is quantized with its own step and zero point, within half a step of each value', async () => {
  const x = pseudoRandom(3 * IN, 9);
  x.fill(0, IN, 2 * IN); // an all-zero token gives the bias, not NaN
  for (let i = 2 * IN; i < 3 * IN; i++) x[i] = 100 * Math.abs(x[i]); // 100× larger and positive, like SiLU's outputs
  const y = await integerLinear(x);
  const expected = reference(x);
  const w = dequantizeChannels(W);
  for (let t = 0; t < 3; t++) {
    const row = x.subarray(t * IN, (t + 1) * IN);
    const step = (Math.max(0, ...row) - Math.min(0, ...row)) / 255;
    for (let o = 0; o < OUT; o++) {
      // |Δy| ≤ Σ_i |w_oi|·step/2 (+ float32 rounding)
      const bound = (w.subarray(o * IN, (o + 1) * IN).reduce((sum, v) => sum + Math.abs(v), 0) * step) / 2 + 1e-4;
      const error = Math.abs(y[t * OUT + o] - expected[t * OUT + o]);
      assert.ok(error <= bound, `token ${t}, output ${o}: off by ${error}, bound ${bound}`);
    }
  }
  assert.deepEqual(Array.from(y.subarray(OUT, 2 * OUT)), Array.from(BIAS));
});

test('int8 linear: a single row (a decode step) gives what it gives among other rows, an all-zero one included', async () => {
  const x = pseudoRandom(3 * IN, 11);
  x.fill(0, IN, 2 * IN);
  for (let i = 2 * IN; i < 3 * IN; i++) x[i] *= 50;
  const together = await integerLinear(x);
  for (let t = 0; t < 3; t++) {
    const alone = await integerLinear(x.slice(t * IN, (t + 1) * IN));
    for (let o = 0; o < OUT; o++) {
      const expected = together[t * OUT + o];
      assert.ok(
        Math.abs(alone[o] - expected) <= 1e-5 * Math.max(1, Math.abs(expected)),
        `token ${t}, output ${o}: ${alone[o]} alone, ${expected} among others`,
      );
    }
  }
});

test('int8 linear in a float16 graph: activations are quantized in float32, the result as in float32', async () => {
  const x = pseudoRandom(3 * IN, 13);
  const [single, half] = [await integerLinear(x), await integerLinear(x, ElemType.float16)];
  for (let i = 0; i < single.length; i++)
    assert.ok(
      Math.abs(half[i] - single[i]) <= 2e-3 * Math.max(1, Math.abs(single[i])),
      `${i}: ${half[i]} vs ${single[i]}`,
    );
});
