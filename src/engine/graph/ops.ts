import type { QuantizedBlocks, QuantizedChannels, QuantizedLinear } from '../weights/quantizedCache';
import { ElemType, GraphBuilder } from './builder';

/** The building blocks every architecture file composes. Activations are 2-D [tokens, features] (batch 1). */

/** A linear layer: float weights, or the quantized forms of its products. */
export type Linear = { bias?: string } & (
  | {
      /** [out, in], as PyTorch stores it */
      weight: string;
      quantized?: undefined;
    }
  | { quantized: QuantizedLinear<string> }
);

/** MatMulNBits' accuracy level 4: activations quantized to int8 per block, the fast path of ORT's CPU kernels. */
const QUANTIZED_ACCURACY_LEVEL = 4;

/** y = x·Wᵀ + b, with W dequantized block by block or multiplied in 8-bit integers, when it is quantized */
export function linear(g: GraphBuilder, x: string, layer: Linear, hint: string): string {
  const { quantized, bias } = layer;
  if (!quantized) return g.op('Gemm', bias ? [x, layer.weight, bias] : [x, layer.weight], hint, { transB: 1 });
  if (!quantized.blocks) return channelProduct(g, x, quantized.channels, bias, hint);
  if (!quantized.channels) return blockProduct(g, x, quantized.blocks, bias, hint);
  const { blocks, channels } = quantized;
  // A decoder layer: a one-token step reads its weights through MatMulNBits' 8-bit kernel, 1.2× the integer GEMM's
  // speed at one row here; a prompt's rows multiply in the integer GEMM, twice MatMulNBits' speed at hundreds.
  const rows = dimension(g, x, 0, `${hint}.rows`);
  const single = g.op('Equal', [rows, g.constant('i64.1', BigInt64Array.of(1n), [])], `${hint}.single_row`);
  const [y] = g.ifElse(
    single,
    [hint],
    [g.floatType],
    () => [blockProduct(g, x, blocks, bias, `${hint}.row`)],
    () => [channelProduct(g, x, channels, bias, `${hint}.prompt`)],
  );
  return y;
}

/** x·Wᵀ + b through MatMulNBits, W in blocks of 4 or 8 bits */
function blockProduct(
  g: GraphBuilder,
  x: string,
  w: QuantizedBlocks<string>,
  bias: string | undefined,
  hint: string,
): string {
  // Inputs: A, B, scales, zero_points, g_idx (unused), bias; trailing absent ones left out.
  const optional = [w.zeroPoints ?? '', '', bias ?? ''];
  while (optional.at(-1) === '') optional.pop();
  return g.op(
    'MatMulNBits',
    [x, w.data, w.scales, ...optional],
    hint,
    {
      K: w.inFeatures,
      N: w.outFeatures,
      bits: w.bits,
      block_size: w.blockSize,
      accuracy_level: QUANTIZED_ACCURACY_LEVEL,
    },
    'com.microsoft',
  );
}

/**
 * x·Wᵀ + b in 8-bit integers, W in channels. Each token (row) r of x is a_r·(q_r − z_r): a_r = (max(x_r, 0) −
 * min(x_r, 0))/255, z_r = round(−min/a_r), q_r = clip(round(x_r/a_r) + z_r, 0, 255) in uint8 (a zero point per token,
 * as LLM.int8's "zeropoint vector-wise", which loses less than a symmetric scale does on real decoders). With
 * W_c = s_c·w_c: y_rc = a_r·s_c·Σ_k q_rk·w_kc − a_r·z_r·Σ_k W_kc + b_c. MatMulInteger takes uint8 × int8, the form
 * ONNX Runtime's CPU GEMM kernels run on AMX, VNNI and AVX2; its int32 sums are scaled in float32, where they cannot
 * overflow.
 */
function channelProduct(
  g: GraphBuilder,
  activations: string,
  { data: weight, scales, sums }: QuantizedChannels<string>,
  bias: string | undefined,
  hint: string,
): string {
  // QuantizeLinear of opset 17 takes float32 only; a float16 graph quantizes its activations in float32.
  const x = asFloat32(g, activations);
  const float32 = (name: string, value: number) => g.constant(`f32.${name}`, Float32Array.of(value), []);
  const extreme = (op: 'ReduceMin' | 'ReduceMax', bound: 'Min' | 'Max') =>
    g.op(bound, [g.op(op, [x], `${hint}.${op}`, { axes: [-1], keepdims: 1 }), float32('zero', 0)], `${hint}.${bound}`);
  const low = extreme('ReduceMin', 'Min');
  const range = g.op('Sub', [extreme('ReduceMax', 'Max'), low], `${hint}.range`);
  // An all-zero token gets the smallest step float16 has instead of 0, so it divides to zeros, not NaN.
  const step = g.op(
    'Max',
    [g.op('Div', [range, float32('uint8.top', 255)], `${hint}.step0`), float32('uint8.tiny', 2 ** -24)],
    `${hint}.step`,
  );
  const zeroPoint = g.op(
    'Round',
    [g.op('Div', [g.op('Neg', [low], `${hint}.neg_low`), step], `${hint}.z0`)],
    `${hint}.z`,
  );
  // One pass over the tokens: saturate(round(x_r/a_r) + z_r), rounding half to even, per row (axis 0).
  const perRow = (value: string, name: string) =>
    g.op('Reshape', [value, g.constant('i64.flat', BigInt64Array.of(-1n), [1])], `${hint}.${name}_rows`);
  const codes = g.op(
    'QuantizeLinear',
    [x, perRow(step, 'step'), g.op('Cast', [perRow(zeroPoint, 'z')], `${hint}.z_u8`, { to: ElemType.uint8 })],
    `${hint}.codes`,
    { axis: 0 },
  );
  const products = g.op('Cast', [g.op('MatMulInteger', [codes, weight], `${hint}.sums`)], `${hint}.sums_f`, {
    to: ElemType.float32,
  });
  const rowScaled = g.op(
    'Mul',
    [g.op('Mul', [products, asFloat32(g, scales)], `${hint}.scaled`), step],
    `${hint}.row_scaled`,
  );
  // The rank-one terms −a_r·z_r·ΣW_c and b_c in one Gemm onto rowScaled: one pass over [tokens, out], not three.
  const zeroTerm = g.op('Neg', [g.op('Mul', [step, zeroPoint], `${hint}.step_z`)], `${hint}.zero_term`);
  const asRow = (value: string, name: string) =>
    g.op('Unsqueeze', [asFloat32(g, value), g.constant('i64.0', BigInt64Array.of(0n), [1])], `${hint}.${name}_row`);
  const [left, right] = bias
    ? [
        g.op(
          'Concat',
          [zeroTerm, g.op('Expand', [float32('one', 1), g.op('Shape', [step], `${hint}.rows`)], `${hint}.ones`)],
          `${hint}.left`,
          { axis: 1 },
        ),
        g.op('Concat', [asRow(sums, 'sums'), asRow(bias, 'bias')], `${hint}.right`, { axis: 0 }),
      ]
    : [zeroTerm, asRow(sums, 'sums')];
  const y = g.op('Gemm', [left, right, rowScaled], g.floatType === ElemType.float32 ? hint : `${hint}.f32`);
  return g.floatType === ElemType.float32 ? y : g.op('Cast', [y], hint, { to: g.floatType });
}

/** The size of x along `axis`, an int64 scalar known when the graph runs. */
export function dimension(g: GraphBuilder, x: string, axis: number, hint: string): string {
  return g.op(
    'Gather',
    [g.op('Shape', [x], `${hint}.shape`), g.constant(`i64.${axis}`, BigInt64Array.of(BigInt(axis)), [])],
    hint,
  );
}

/** A value of the graph's compute type as float32 (a Cast unless it already is). */
export function asFloat32(g: GraphBuilder, value: string): string {
  return g.floatType === ElemType.float32 ? value : g.op('Cast', [value], `${value}.f32`, { to: ElemType.float32 });
}

/** y = (x − mean) / √(var + ε) · w + b over the last axis */
export function layerNorm(g: GraphBuilder, x: string, weight: string, bias: string, eps: number, hint: string): string {
  return g.op('LayerNormalization', [x, weight, bias], hint, { axis: -1, epsilon: { float: eps } });
}

/** y = x / √(mean(x²) + ε) · w */
export function rmsNorm(g: GraphBuilder, x: string, weight: string, eps: number, hint: string): string {
  return g.op('SimplifiedLayerNormalization', [x, weight], hint, { axis: -1, epsilon: { float: eps } });
}

export type Activation = 'quick_gelu' | 'gelu' | 'gelu_tanh' | 'silu';

export function activation(g: GraphBuilder, x: string, kind: Activation, hint: string): string {
  switch (kind) {
    case 'quick_gelu': // x·σ(1.702x)
      return g.op('QuickGelu', [x], hint, { alpha: { float: 1.702 } }, 'com.microsoft');
    case 'gelu': // x·Φ(x), exact erf form
      return g.op('Gelu', [x], hint, {}, 'com.microsoft');
    case 'gelu_tanh': // tanh approximation of gelu
      return g.op('FastGelu', [x], hint, {}, 'com.microsoft');
    case 'silu': // x·σ(x)
      return g.op('Mul', [x, g.op('Sigmoid', [x], `${hint}.sigmoid`)], hint);
  }
}

/** [tokens, heads·d] (or [1, tokens, heads·d]) → [heads, tokens, d] */
export function splitHeads(g: GraphBuilder, x: string, heads: number, headDim: number, hint: string): string {
  const shaped = g.op('Reshape', [x, g.int64s('shape.heads', [-1, heads, headDim])], `${hint}.bhd`);
  return g.op('Transpose', [shaped], hint, { perm: [1, 0, 2] });
}

/** [heads, tokens, d] → [tokens, heads·d] */
export function mergeHeads(g: GraphBuilder, x: string, hint: string): string {
  const transposed = g.op('Transpose', [x], `${hint}.thd`, { perm: [1, 0, 2] });
  return g.op('Reshape', [transposed, g.int64s('shape.merge', [0, -1])], hint);
}

/**
 * mean_h x[h] of x [heads, …] → […], as a row of 1/heads times x seen as [heads, rest]: ONNX Runtime's CPU ReduceMean
 * over a leading axis ran 4-6 times slower (4.9 ms against 1.1 ms for a [16, 602, 602] input, alone in a session).
 */
export function meanOverHeads(g: GraphBuilder, x: string, heads: number, hint: string): string {
  const flat = g.op('Reshape', [x, g.int64s(`shape.heads.${heads}.flat`, [heads, -1])], `${hint}.flat`);
  const row = g.op(
    'Expand',
    [g.scalar(`scale.mean.${heads}`, 1 / heads), g.int64s(`shape.row.${heads}`, [1, heads])],
    `${hint}.row`,
  );
  const rest = g.op('Shape', [x], `${hint}.rest`, { start: 1 });
  return g.op('Reshape', [g.op('MatMul', [row, flat], `${hint}.sum`), rest], hint);
}

/** Rotary tables for integer positions: cos, sin of pos·θ_i with θ_i = base^(−2i/d), each [tokens, d/2] */
export function rotaryTables(g: GraphBuilder, positions: string, invFreq: Float32Array): { cos: string; sin: string } {
  const pos = g.op(
    'Unsqueeze',
    [g.op('Cast', [positions], 'rope.pos_f', { to: 1 }), g.int64s('axes.1', [1])],
    'rope.pos_col',
  );
  const inv = g.constant('rope.inv_freq', invFreq, [1, invFreq.length]);
  const angles = g.op('Mul', [pos, inv], 'rope.angles');
  // Angles are computed in float32 (as transformers does); the tables take the compute type.
  const asComputeType = (x: string, hint: string) =>
    g.floatType === ElemType.float32 ? x : g.op('Cast', [x], hint, { to: g.floatType });
  return {
    cos: asComputeType(g.op('Cos', [angles], 'rope.cos32'), 'rope.cos'),
    sin: asComputeType(g.op('Sin', [angles], 'rope.sin32'), 'rope.sin'),
  };
}

/**
 * x·cos + rotate_half(x)·sin per head, with rotate_half(x) = [−x₂, x₁] (HF convention), as ONNX Runtime's
 * RotaryEmbedding: x is [tokens, heads·d], the result [1, tokens, heads·d]. Row i of the tables is token i's, so the
 * op's position ids start at 0.
 */
export function applyRotary(
  g: GraphBuilder,
  x: string,
  tables: { cos: string; sin: string },
  heads: number,
  hint: string,
): string {
  return g.op(
    'RotaryEmbedding',
    [
      g.op('Unsqueeze', [x, g.int64s('axes.0', [0])], `${hint}.batch`),
      g.constant('i64.start', BigInt64Array.of(0n), [1]),
      tables.cos,
      tables.sin,
    ],
    hint,
    { num_heads: heads },
    'com.microsoft',
  );
}

/**
 * Additive causal bias [tokens, tokens] among one run's tokens: the lowest float where token j comes after token i.
 * Keys already cached come before all of them.
 */
export function causalTriangle(g: GraphBuilder, tokens: string, hint: string): string {
  const index = g.op(
    'Range',
    [g.constant('i64.0', BigInt64Array.of(0n), []), tokens, g.constant('i64.1', BigInt64Array.of(1n), [])],
    `${hint}.index`,
  );
  const asColumn = g.op('Unsqueeze', [index, g.int64s('axes.1', [1])], `${hint}.column`);
  const later = g.op('Greater', [index, asColumn], `${hint}.later`);
  return g.op('Where', [later, g.scalar('mask.lowest', g.lowestFloat), g.scalar('f.0', 0)], hint);
}
