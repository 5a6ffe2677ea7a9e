import * as path from 'node:path';
import { FicocoError } from '../../common/errors';
import type { TensorLocation } from '../weights/safetensors';
import type { AttentionNeeds } from '../../reduction/tokenState';
import { Dim, ElemType, GraphBuilder } from './builder';
import { asFloat32, causalTriangle, dimension, rotaryTables } from './ops';
import type { PastKeysValues } from './attention';

/**
 * A model is a few towers (vision, token embedding, decoder); a tower is a list of blocks
 * (`vision.l3.attn`, `vision.l3.mlp`, …). A segment is a contiguous run of blocks built into one
 * ONNX graph; reduction hooks run between segments.
 */
export interface Tower {
  readonly name: string;
  readonly input: { name: string; elemType: ElemType; dims: Dim[] };
  readonly output: { name: string; dims: Dim[] };
  readonly blocks: readonly Block[];
}

export interface Block {
  /** e.g. 'vision.l3.attn' */
  readonly id: string;
  /** the hook site right after this block, e.g. 'vision:3' */
  readonly site?: string;
  /** width of the hidden state this block outputs */
  readonly width: number;
  /** the decoder layer whose KV cache this block reads and extends */
  readonly cacheLayer?: number;
  /** an attention block: it can expose its head-averaged attention and keys (asked for by `keys` or `keyCosine`) */
  readonly attends?: boolean;
  /** the transformer layer this block is half of (attention or MLP), for per-layer token counts */
  readonly layer?: number;
  emit(scope: SegmentScope, x: string, expose?: AttentionNeeds): BlockOutput;
}

export interface BlockOutput {
  hidden: string;
  attention?: string;
  meanKeys?: string;
  queryRows?: string;
  keyRows?: string;
}

/** What a block may ask of the graph it is being built into. */
export interface SegmentScope {
  readonly g: GraphBuilder;
  readonly computeType: ElemType;
  /** a float tensor as a graph value in the compute type (external data, cast if stored otherwise) */
  weight(tensor: TensorLocation): string;
  /** the integer tensor of a quantized weight (U8 blocks or I8 channels), as stored */
  quantizedBytes(tensor: TensorLocation): string;
  /** token positions [tokens] int64, a graph input */
  positions(): string;
  /** log(size) of each token [tokens], a graph input, when the segment is built for proportional attention */
  logSizes(): string | undefined;
  /** rotary cos/sin tables for the positions, built once per segment */
  rotary(invFreq: Float32Array): { cos: string; sin: string };
  /** the causal triangle [tokens, tokens] over the run's tokens, built once per segment */
  causal(): string;
  /** this layer's cache as graph inputs (slots and their mask); `store` declares this run's keys/values as outputs */
  cache(layer: number): PastKeysValues & { store(newKeys: string, newValues: string): void };
}

export interface SegmentGraph {
  bytes: Uint8Array;
  inputName: string;
  outputName: string;
  usesPositions: boolean;
  /** the graph takes `log_sizes` [tokens] */
  usesLogSizes: boolean;
  /**
   * decoder layers whose cache goes in as `past.l{i}.keys|values|mask` (slots, some unused, and the mask that hides
   * them) and whose new rows come out as `present.l{i}.keys|values`
   */
  cacheLayers: number[];
  exposes: AttentionNeeds;
}

/** a segment's hidden-state input and output, when the segment does not start or end its tower */
export const HIDDEN = 'hidden';
export const HIDDEN_OUT = 'hidden_out';
export const POSITIONS = 'positions';
export const LOG_SIZES = 'log_sizes';
export const ATTENTION = 'attention';
export const MEAN_KEYS = 'mean_keys';
export const HIDDEN_COSINE = 'hidden_cosine';
export const KEY_COSINE = 'key_cosine';
export const QUERY_ROWS = 'query_rows';
export const KEY_ROWS = 'key_rows';
export const pastName = (layer: number, part: 'keys' | 'values' | 'mask') => `past.l${layer}.${part}`;
export const presentName = (layer: number, part: 'keys' | 'values') => `present.l${layer}.${part}`;

/**
 * Runs of at least this many tokens attend with ONNX Runtime's fused GroupQueryAttention, shorter ones with explicit
 * ops, which are faster there. TinyLlama shapes, one layer, 2 threads: a decode step at 2,048 cached tokens 0.8 ms
 * explicit, 1.9 fused; 256 tokens after 1,792 39.7 against 28.3 ms; 128 after 2,048 18.6 against 14.9; level below
 * about 1,000 keys.
 */
const FUSED_ATTENTION_MIN_TOKENS = 128;

/** The dtypes a float weight may be stored in. */
const FLOAT_TYPES: Record<string, ElemType> = { F32: ElemType.float32, F16: ElemType.float16, BF16: ElemType.bfloat16 };
/** The dtypes of quantized weights (int4 blocks U8, int8 channels I8), read as stored. */
const INTEGER_TYPES: Record<string, ElemType> = { U8: ElemType.uint8, I8: ElemType.int8 };

/** What one segment's graph is built for. */
export interface SegmentSpec {
  /** blocks [start, end) of the tower */
  start: number;
  end: number;
  computeType: ElemType;
  /** what the segment's last attention block outputs besides its hidden states (default nothing) */
  expose?: AttentionNeeds;
  /** attention adds log(size) of each key to its logits: blocks may ask for the `log_sizes` input (default false) */
  proportionalAttention?: boolean;
  /**
   * the folder ONNX Runtime resolves external data against; locations are written relative to it (default: each file's
   * own)
   */
  weightsFolder?: string;
}

/** Builds blocks [start, end) of a tower into one graph. */
export function buildSegment(tower: Tower, spec: SegmentSpec): SegmentGraph {
  const { start, end, computeType, expose = {}, proportionalAttention = false, weightsFolder } = spec;
  const g = new GraphBuilder(`${tower.name}[${start},${end})`, computeType);
  const first = start === 0;
  const last = end === tower.blocks.length;
  const inputName = first ? tower.input.name : HIDDEN;
  const declared = first
    ? g.input(tower.input.name, tower.input.elemType, tower.input.dims)
    : g.input(HIDDEN, ElemType.float32, ['tokens', tower.blocks[start - 1].width]);
  // Segments talk float32 at their edges so hooks and callers never see the compute type.
  const floatInput = !first || tower.input.elemType === ElemType.float32;
  const x0 =
    floatInput && computeType !== ElemType.float32
      ? g.op('Cast', [declared], 'segment.input', { to: computeType })
      : declared;

  const weights = new Map<string, string>();
  let positions: string | undefined;
  let logSizes: string | undefined;
  let rotary: { cos: string; sin: string } | undefined;
  let causal: string | undefined;
  let tokens: string | undefined;
  const tokenCount = () => (tokens ??= dimension(g, x0, 0, 'segment.tokens'));
  let promptChunk: string | undefined;
  const cacheLayers: number[] = [];

  /**
   * A tensor of the weight files as external data, declared once per segment; `use` turns it into the value the graph
   * reads.
   */
  const initializer = (tensor: TensorLocation, storedType: ElemType, use: (stored: string) => string): string => {
    const known = weights.get(tensor.name);
    if (known) return known;
    const location =
      weightsFolder === undefined
        ? path.basename(tensor.file)
        : path.relative(weightsFolder, tensor.file).split(path.sep).join('/');
    const stored = g.externalInitializer(tensor.name, storedType, tensor.shape, {
      location,
      offset: tensor.byteOffset,
      length: tensor.byteLength,
    });
    const value = use(stored);
    weights.set(tensor.name, value);
    return value;
  };
  const scope: SegmentScope = {
    g,
    computeType,
    weight(tensor) {
      const storedType = FLOAT_TYPES[tensor.dtype];
      if (storedType === undefined) {
        throw new FicocoError(
          `${tensor.name} is stored as ${tensor.dtype}; a weight must be F32, F16 or BF16.`,
          'weights',
        );
      }
      return initializer(tensor, storedType, (stored) =>
        storedType === computeType ? stored : g.op('Cast', [stored], `${tensor.name}.cast`, { to: computeType }),
      );
    },
    quantizedBytes(tensor) {
      const storedType = INTEGER_TYPES[tensor.dtype];
      if (storedType === undefined)
        throw new FicocoError(
          `${tensor.name} is stored as ${tensor.dtype}; quantized weights are U8 or I8.`,
          'weights',
        );
      return initializer(tensor, storedType, (stored) => stored);
    },
    positions() {
      positions ??= g.input(POSITIONS, ElemType.int64, ['tokens']);
      return positions;
    },
    logSizes() {
      if (!proportionalAttention) return undefined;
      if (logSizes === undefined) {
        const declaredLogSizes = g.input(LOG_SIZES, ElemType.float32, ['tokens']);
        logSizes =
          computeType === ElemType.float32
            ? declaredLogSizes
            : g.op('Cast', [declaredLogSizes], 'segment.log_sizes', { to: computeType });
      }
      return logSizes;
    },
    rotary(invFreq) {
      rotary ??= rotaryTables(g, scope.positions(), invFreq);
      return rotary;
    },
    causal() {
      causal ??= causalTriangle(g, tokenCount(), 'segment.causal');
      return causal;
    },
    cache(layer) {
      cacheLayers.push(layer);
      const dims: Dim[] = ['kv_heads', `slots_l${layer}`, 'head_dim'];
      promptChunk ??= g.op(
        'GreaterOrEqual',
        [tokenCount(), g.constant('fused.min_tokens', BigInt64Array.of(BigInt(FUSED_ATTENTION_MIN_TOKENS)), [])],
        'segment.prompt_chunk',
      );
      return {
        promptChunk,
        keys: g.input(pastName(layer, 'keys'), computeType, dims),
        values: g.input(pastName(layer, 'values'), computeType, dims),
        mask: g.input(pastName(layer, 'mask'), computeType, [`keys_l${layer}`]),
        store(newKeys, newValues) {
          g.output(presentName(layer, 'keys'), newKeys, computeType, ['kv_heads', 'tokens', 'head_dim']);
          g.output(presentName(layer, 'values'), newValues, computeType, ['kv_heads', 'tokens', 'head_dim']);
        },
      };
    },
  };

  let exposing = end - 1;
  while (exposing >= start && !tower.blocks[exposing].attends) exposing--;
  const wanted = expose.attention !== undefined || expose.keys === true || expose.keyCosine === true;
  if (wanted && exposing < start) {
    throw new Error(`segment ${tower.blocks[start].id}…${tower.blocks[end - 1].id} has no attention block to expose`);
  }
  let x = x0;
  let exposed: BlockOutput = { hidden: x0 };
  for (let i = start; i < end; i++) {
    const output = tower.blocks[i].emit(scope, x, i === exposing ? expose : undefined);
    if (i === exposing) exposed = output;
    x = output.hidden;
  }
  const outputName = last ? tower.output.name : HIDDEN_OUT;
  g.output(
    outputName,
    asFloat32(g, x),
    ElemType.float32,
    last ? tower.output.dims : ['tokens', tower.blocks[end - 1].width],
  );
  // With a KV cache each run sees a chunk of the prompt: it exposes rows (attention probabilities, mean keys, the
  // factors of the logits), and the engine gathers them and computes the cosines.
  const exposesRows = cacheLayers.length > 0;
  if (exposed.attention) g.output(ATTENTION, asFloat32(g, exposed.attention), ElemType.float32, ['tokens', 'keys']);
  if (exposed.queryRows && exposed.keyRows) {
    g.output(QUERY_ROWS, asFloat32(g, exposed.queryRows), ElemType.float32, ['tokens', 'kv_width']);
    g.output(KEY_ROWS, asFloat32(g, exposed.keyRows), ElemType.float32, ['tokens', 'kv_width']);
  }
  if (exposed.meanKeys && (expose.keys || (exposesRows && expose.keyCosine)))
    g.output(MEAN_KEYS, asFloat32(g, exposed.meanKeys), ElemType.float32, ['keys', 'head_dim']);
  if (!exposesRows && exposed.meanKeys && expose.keyCosine)
    g.output(KEY_COSINE, asFloat32(g, cosineMatrix(g, exposed.meanKeys, 'key_cosine')), ElemType.float32, [
      'keys',
      'keys',
    ]);
  if (!exposesRows && expose.hiddenCosine)
    g.output(HIDDEN_COSINE, asFloat32(g, cosineMatrix(g, x, 'hidden_cosine')), ElemType.float32, ['tokens', 'tokens']);
  return {
    bytes: g.build(),
    inputName,
    outputName,
    usesPositions: positions !== undefined,
    usesLogSizes: logSizes !== undefined,
    cacheLayers,
    exposes: expose,
  };
}

/** cos(x_i, x_j) for every pair of rows of a [rows, width] value: the row-normalised rows times their transpose. */
function cosineMatrix(g: GraphBuilder, x: string, hint: string): string {
  const length = g.op('ReduceL2', [x], `${hint}.norm`, { axes: [1], keepdims: 1 });
  const unit = g.op(
    'Div',
    [x, g.op('Max', [length, g.scalar('cosine.eps', 1e-12)], `${hint}.safe_norm`)],
    `${hint}.unit`,
  );
  return g.op('MatMul', [unit, g.op('Transpose', [unit], `${hint}.unit_t`, { perm: [1, 0] })], `${hint}.matrix`);
}
