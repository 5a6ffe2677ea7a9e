import { attention } from '../graph/attention';
import { ElemType } from '../graph/builder';
import { activation, linear, rmsNorm } from '../graph/ops';
import { Block, Tower } from '../graph/segment';
import { FicocoError, shortJson } from '../../common/errors';
import type { DecoderKind, TextConfig } from './family';
import { Fields, Json } from './fields';
import { WeightScope, bindAttention, bindLinear } from './weights';

export const INPUT_IDS = 'input_ids';
export const EMBEDDINGS = 'embeddings';
export const LOGITS = 'logits';

/** Where a decoder's attention projections have biases, given its config's attention_bias. */
type AttentionBiases = (attentionBias: boolean) => { qkvBias: boolean; outputBias: boolean };

/** Llama's and Mistral's attention_bias covers q, k, v and o_proj alike. */
const configuredBiases: AttentionBiases = (attentionBias) => ({ qkvBias: attentionBias, outputBias: attentionBias });

/** Each Llama-style decoder: transformers' defaults for the fields a config leaves out, and its attention's biases. */
const LLAMA_STYLES = {
  llama: {
    biases: configuredBiases,
    defaults: {
      hidden_size: 4096,
      intermediate_size: 11008,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      vocab_size: 32000,
      max_position_embeddings: 2048,
      tie_word_embeddings: false,
      use_sliding_window: false,
    },
  },
  mistral: {
    biases: configuredBiases,
    defaults: {
      hidden_size: 4096,
      intermediate_size: 14336,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      vocab_size: 32000,
      max_position_embeddings: 131072,
      tie_word_embeddings: false,
      // Mistral has no switch: a sliding_window it does not set is 4096, one set to null none, on every layer.
      use_sliding_window: true,
      sliding_window: 4096,
      max_window_layers: 0,
    },
  },
  qwen2: {
    // Qwen2 always has q/k/v biases and none on o_proj, whatever attention_bias says.
    biases: () => ({ qkvBias: true, outputBias: false }),
    defaults: {
      hidden_size: 4096,
      intermediate_size: 22016,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 32,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      vocab_size: 151936,
      max_position_embeddings: 32768,
      tie_word_embeddings: false,
      use_sliding_window: false,
      sliding_window: 4096,
      // Qwen2 slides only the layers from this one on.
      max_window_layers: 28,
    },
  },
} satisfies Record<string, { biases: AttentionBiases; defaults: Json }>;

/** Llama-style decoders by text_config.model_type: one architecture, each with its own defaults. */
export const LLAMA_STYLE_DECODERS: Record<keyof typeof LLAMA_STYLES, DecoderKind> = {
  llama: llamaStyle('llama'),
  mistral: llamaStyle('mistral'),
  qwen2: llamaStyle('qwen2'),
};

function llamaStyle(modelType: keyof typeof LLAMA_STYLES): DecoderKind {
  return {
    parseConfig: (json, root, source) => parseText(modelType, json, root, source),
    embeddingTower,
    decoderTower,
  };
}

/**
 * The rotary embeddings' base from rope_parameters, where configs saved by transformers 5 keep it (and the scaling
 * rope_scaling held before); scaled rotary embeddings, under either name, are refused, not run unscaled.
 */
function ropeParameters(json: Json, source: string): Json {
  if (json.rope_scaling !== undefined && json.rope_scaling !== null)
    throw new FicocoError(
      `${source}: text_config.rope_scaling is set (${shortJson(json.rope_scaling)}); scaled rotary ` +
        `embeddings are not supported yet.`,
      'config',
    );
  const parameters = json.rope_parameters;
  if (parameters === undefined || parameters === null) return {};
  if (typeof parameters !== 'object' || Array.isArray(parameters))
    throw new FicocoError(
      `${source}: text_config.rope_parameters is ${shortJson(parameters)}; expected an object.`,
      'config',
    );
  const { rope_type: type = 'default', rope_theta: theta } = parameters as Json;
  if (type !== 'default')
    throw new FicocoError(
      `${source}: text_config.rope_parameters has rope_type ${shortJson(type)}; scaled rotary embeddings are not ` +
        `supported yet.`,
      'config',
    );
  return theta === undefined ? {} : { rope_theta: theta };
}

function parseText(modelType: keyof typeof LLAMA_STYLES, json: Json, root: Json, source: string): TextConfig {
  const { biases, defaults }: { biases: AttentionBiases; defaults: Json } = LLAMA_STYLES[modelType];
  // Tied embeddings may be declared on the text config or, in llava-hf configs, at the top level.
  const tie = json.tie_word_embeddings ?? root.tie_word_embeddings ?? defaults.tie_word_embeddings;
  const f = new Fields(
    {
      hidden_act: 'silu',
      attention_bias: false,
      mlp_bias: false,
      ...defaults,
      ...json,
      ...ropeParameters(json, source),
      tie_word_embeddings: tie,
    },
    source,
    'text_config.',
  );
  const hiddenSize = f.int('hidden_size', 1);
  const heads = f.int('num_attention_heads', 1);
  const kvHeads =
    json.num_key_value_heads === undefined || json.num_key_value_heads === null
      ? ((defaults.num_key_value_heads as number | undefined) ?? heads)
      : f.int('num_key_value_heads', 1);
  f.check(heads % kvHeads === 0, 'num_key_value_heads', `must divide num_attention_heads (${heads})`);
  const explicitHeadDim = json.head_dim !== undefined && json.head_dim !== null;
  if (!explicitHeadDim)
    f.check(
      hiddenSize % heads === 0,
      'hidden_size',
      `must be divisible by num_attention_heads (${heads}) when head_dim is not given`,
    );
  const headDim = explicitHeadDim ? f.int('head_dim', 2) : hiddenSize / heads;
  f.check(
    Number.isInteger(headDim) && headDim % 2 === 0,
    'head_dim',
    'must be an even integer (rotary embeddings rotate pairs)',
  );
  // Attention over a sliding window is full causal attention while the context stays inside it: the context stops there.
  const merged = { ...defaults, ...json };
  const layers = f.int('num_hidden_layers', 1);
  const windowed =
    f.bool('use_sliding_window') && merged.sliding_window !== null && f.int('max_window_layers', 0) < layers;
  const window = windowed ? f.int('sliding_window', 1) : Infinity;
  return {
    modelType,
    hiddenSize,
    intermediateSize: f.int('intermediate_size', 1),
    layers,
    heads,
    kvHeads,
    headDim,
    rmsNormEps: f.positive('rms_norm_eps'),
    ropeTheta: f.positive('rope_theta'),
    vocabSize: f.int('vocab_size', 1),
    maxPositions: Math.min(f.int('max_position_embeddings', 1), window),
    tieWordEmbeddings: f.bool('tie_word_embeddings'),
    ...biases(f.bool('attention_bias')),
    mlpBias: f.bool('mlp_bias'),
    activation: f.activation('hidden_act'),
  };
}

/** Token ids → embedding rows. */
function embeddingTower(config: TextConfig, weights: WeightScope): Tower {
  const table = weights.get('embed_tokens.weight', [config.vocabSize, config.hiddenSize]);
  return {
    name: 'embed',
    input: { name: INPUT_IDS, elemType: ElemType.int64, dims: ['tokens'] },
    output: { name: EMBEDDINGS, dims: ['tokens', config.hiddenSize] },
    blocks: [
      {
        id: 'text.embed',
        width: config.hiddenSize,
        emit: (scope, ids) => ({
          hidden: scope.g.op('Gather', [scope.weight(table), ids], 'text.embed.rows', { axis: 0 }),
        }),
      },
    ],
  };
}

/**
 * Llama-style decoder (Llama, Mistral, Qwen2: pre-RMSNorm, rotary positions, grouped-query
 * attention, SiLU-gated MLP) as an attention block and an MLP block per layer, then the head
 * producing the last position's logits. Hook site `llm:<l>` sits after layer l's attention residual.
 */
function decoderTower(config: TextConfig, weights: WeightScope, lmHead: WeightScope): Tower {
  const layers = Array.from({ length: config.layers }, (_, l) => decoderLayer(config, weights, l)).flat();
  return {
    name: 'decoder',
    input: { name: EMBEDDINGS, elemType: ElemType.float32, dims: ['tokens', config.hiddenSize] },
    output: { name: LOGITS, dims: [1, config.vocabSize] },
    blocks: [...layers, decoderHead(config, weights, lmHead)],
  };
}

/** θ_i = base^(−2i/d) in double, rounded once to float32 (transformers' float32 steps differ by ≤ 1.4e-7 relative) */
export function rotaryInverseFrequencies(headDim: number, base: number): Float32Array {
  return Float32Array.from({ length: headDim / 2 }, (_, i) => 1 / base ** ((2 * i) / headDim));
}

function decoderLayer(config: TextConfig, weights: WeightScope, layer: number): Block[] {
  const { hiddenSize: width, heads, kvHeads, headDim, intermediateSize, rmsNormEps } = config;
  const at = (name: string) => `layers.${layer}.${name}`;
  const inputNorm = weights.get(at('input_layernorm.weight'), [width]);
  const postNorm = weights.get(at('post_attention_layernorm.weight'), [width]);
  const projections = {
    q: weights.linear(at('self_attn.q_proj'), width, heads * headDim, { bias: config.qkvBias, quantizable: 'any' }),
    k: weights.linear(at('self_attn.k_proj'), width, kvHeads * headDim, { bias: config.qkvBias, quantizable: 'any' }),
    v: weights.linear(at('self_attn.v_proj'), width, kvHeads * headDim, { bias: config.qkvBias, quantizable: 'any' }),
    o: weights.linear(at('self_attn.o_proj'), heads * headDim, width, { bias: config.outputBias, quantizable: 'any' }),
  };
  const gate = weights.linear(at('mlp.gate_proj'), width, intermediateSize, {
    bias: config.mlpBias,
    quantizable: 'any',
  });
  const up = weights.linear(at('mlp.up_proj'), width, intermediateSize, { bias: config.mlpBias, quantizable: 'any' });
  const down = weights.linear(at('mlp.down_proj'), intermediateSize, width, {
    bias: config.mlpBias,
    quantizable: 'any',
  });
  const invFreq = rotaryInverseFrequencies(headDim, config.ropeTheta);
  const name = `text.l${layer}`;
  const attentionBlock: Block = {
    id: `${name}.attn`,
    site: `llm:${layer}`,
    attends: true,
    layer,
    width,
    cacheLayer: layer,
    emit(scope, x, expose) {
      const { g } = scope;
      const normed = rmsNorm(g, x, scope.weight(inputNorm), rmsNormEps, `${name}.input_norm`);
      const cache = scope.cache(layer);
      const result = attention(
        g,
        normed,
        bindAttention(scope, projections),
        { heads, kvHeads, headDim },
        { rotary: scope.rotary(invFreq), past: cache, causal: scope.causal(), expose },
        `${name}.attn`,
      );
      cache.store(result.newKeys, result.newValues);
      return {
        hidden: g.op('Add', [x, result.out], `${name}.attn_residual`),
        attention: result.attention,
        meanKeys: result.meanKeys,
        queryRows: result.queryRows,
        keyRows: result.keyRows,
      };
    },
  };
  const mlpBlock: Block = {
    id: `${name}.mlp`,
    layer,
    width,
    emit(scope, h) {
      const { g } = scope;
      const normed = rmsNorm(g, h, scope.weight(postNorm), rmsNormEps, `${name}.post_norm`);
      const gated = activation(
        g,
        linear(g, normed, bindLinear(scope, gate), `${name}.gate`),
        config.activation,
        `${name}.act`,
      );
      const product = g.op('Mul', [gated, linear(g, normed, bindLinear(scope, up), `${name}.up`)], `${name}.gated`);
      return { hidden: g.op('Add', [h, linear(g, product, bindLinear(scope, down), `${name}.down`)], `${name}.out`) };
    },
  };
  return [attentionBlock, mlpBlock];
}

function decoderHead(config: TextConfig, weights: WeightScope, lmHead: WeightScope): Block {
  const finalNorm = weights.get('norm.weight', [config.hiddenSize]);
  // The head is quantized with the layers: over a 32k vocabulary it is a third of an int4 decoder's bytes per token.
  // It multiplies the last position only.
  const head = config.tieWordEmbeddings
    ? weights.linear('embed_tokens', config.hiddenSize, config.vocabSize, {
        bias: false,
        quantizable: 'one',
        tied: true,
      })
    : lmHead.linear('lm_head', config.hiddenSize, config.vocabSize, { bias: false, quantizable: 'one' });
  return {
    id: 'text.head',
    width: config.vocabSize,
    emit(scope, x) {
      const { g } = scope;
      // Only the last position's logits are needed to pick the next token.
      const lastRow = g.op(
        'Slice',
        [x, g.int64s('i.-1', [-1]), g.int64s('i.max', [Number.MAX_SAFE_INTEGER]), g.int64s('axes.0', [0])],
        'text.head.last',
      );
      const normed = rmsNorm(g, lastRow, scope.weight(finalNorm), config.rmsNormEps, 'text.head.norm');
      return { hidden: linear(g, normed, bindLinear(scope, head), 'text.head.logits') };
    },
  };
}
