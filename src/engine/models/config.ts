import { FicocoError } from '../../common/errors';
import { Activation } from '../graph/ops';

/** Parsed, validated config.json of a LLaVA-family model. Defaults are transformers' own. */
export interface LlavaConfig {
  imageTokenId: number;
  projector: { activation: Activation; bias: boolean };
  /** index into the vision tower's hidden states (0 = embeddings, i = output of layer i−1) */
  visionFeatureLayer: number;
  /** 'default' drops the [CLS] token before the projector, 'full' keeps it */
  visionFeatureSelect: 'default' | 'full';
  vision: VisionConfig;
  text: TextConfig;
}

export interface VisionConfig {
  modelType: 'clip_vision_model';
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  imageSize: number;
  patchSize: number;
  layerNormEps: number;
  activation: Activation;
}

export interface TextConfig {
  modelType: 'llama' | 'mistral' | 'qwen2';
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
  /** the longest sequence the model was trained on (max_position_embeddings): prompt plus answer must fit */
  maxPositions: number;
  tieWordEmbeddings: boolean;
  /** biases on the q, k, v projections */
  qkvBias: boolean;
  /** bias on the output projection */
  outputBias: boolean;
  mlpBias: boolean;
  activation: Activation;
}

type Json = Record<string, unknown>;

const TEXT_DEFAULTS: Record<TextConfig['modelType'], Json> = {
  llama: { hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, rms_norm_eps: 1e-6, rope_theta: 10000, vocab_size: 32000, max_position_embeddings: 2048, tie_word_embeddings: false },
  mistral: { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_theta: 10000, vocab_size: 32000, max_position_embeddings: 131072, tie_word_embeddings: false },
  qwen2: { hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, rms_norm_eps: 1e-6, rope_theta: 10000, vocab_size: 151936, max_position_embeddings: 32768, tie_word_embeddings: false },
};

const VISION_DEFAULTS: Json = { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 32, layer_norm_eps: 1e-5, hidden_act: 'quick_gelu' };

/** The tower LlavaConfig builds when config.json has no vision_config at all (CLIP ViT-L/14 at 336 px). */
const LLAVA_VISION_CONFIG: Json = { model_type: 'clip_vision_model', hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 24, num_attention_heads: 16, image_size: 336, patch_size: 14 };

/** llava-hf configs store only what differs from these defaults. */
const LLAVA_DEFAULTS: Json = { image_token_index: 32000, projector_hidden_act: 'gelu', vision_feature_layer: -2, vision_feature_select_strategy: 'default', multimodal_projector_bias: true };

export function parseLlavaConfig(json: unknown, source: string): LlavaConfig {
  const root = asObject(json, source, 'the top level');
  if (root.model_type !== 'llava') {
    throw new FicocoError(`${source}: model_type is ${JSON.stringify(root.model_type)}; this engine supports "llava" (LLaVA-1.5 style: CLIP vision tower, MLP projector, Llama/Mistral/Qwen2 decoder).`, 'config');
  }
  const fields = new Fields({ ...LLAVA_DEFAULTS, ...root }, source, '');
  const vision = parseVision(asObject(root.vision_config ?? LLAVA_VISION_CONFIG, source, 'vision_config'), source);
  const text = parseText(asObject(root.text_config ?? { model_type: 'llama' }, source, 'text_config'), root, source);
  const featureLayer = fields.int('vision_feature_layer', -vision.layers - 1, vision.layers);
  const visionFeatureLayer = featureLayer < 0 ? vision.layers + 1 + featureLayer : featureLayer;
  return {
    imageTokenId: root.image_token_id !== undefined ? fields.int('image_token_id', 0) : fields.int('image_token_index', 0),
    projector: { activation: fields.activation('projector_hidden_act'), bias: fields.bool('multimodal_projector_bias') },
    visionFeatureLayer,
    visionFeatureSelect: fields.oneOf('vision_feature_select_strategy', ['default', 'full'] as const),
    vision,
    text,
  };
}

function parseVision(json: Json, source: string): VisionConfig {
  if (json.model_type !== undefined && json.model_type !== 'clip_vision_model') {
    throw new FicocoError(`${source}: vision_config.model_type is ${JSON.stringify(json.model_type)}; supported: "clip_vision_model".`, 'config');
  }
  const f = new Fields({ ...VISION_DEFAULTS, ...json }, source, 'vision_config.');
  const hiddenSize = f.int('hidden_size', 1);
  const heads = f.int('num_attention_heads', 1);
  f.check(hiddenSize % heads === 0, 'hidden_size', `must be divisible by num_attention_heads (${heads})`);
  const imageSize = f.int('image_size', 1);
  const patchSize = f.int('patch_size', 1);
  f.check(imageSize % patchSize === 0, 'image_size', `must be a multiple of patch_size (${patchSize})`);
  return {
    modelType: 'clip_vision_model',
    hiddenSize,
    intermediateSize: f.int('intermediate_size', 1),
    layers: f.int('num_hidden_layers', 1),
    heads,
    imageSize,
    patchSize,
    layerNormEps: f.number('layer_norm_eps'),
    activation: f.activation('hidden_act'),
  };
}

function parseText(json: Json, root: Json, source: string): TextConfig {
  const modelType = json.model_type ?? 'llama';
  if (modelType !== 'llama' && modelType !== 'mistral' && modelType !== 'qwen2') {
    throw new FicocoError(`${source}: text_config.model_type is ${JSON.stringify(modelType)}; supported: "llama", "mistral", "qwen2".`, 'config');
  }
  const defaults = TEXT_DEFAULTS[modelType];
  // Tied embeddings may be declared on the text config or, in llava-hf configs, at the top level.
  const tie = json.tie_word_embeddings ?? root.tie_word_embeddings ?? defaults.tie_word_embeddings;
  const f = new Fields({ hidden_act: 'silu', attention_bias: false, mlp_bias: false, ...defaults, ...json, tie_word_embeddings: tie }, source, 'text_config.');
  const hiddenSize = f.int('hidden_size', 1);
  const heads = f.int('num_attention_heads', 1);
  const kvHeads = json.num_key_value_heads === undefined || json.num_key_value_heads === null ? (defaults.num_key_value_heads as number | undefined) ?? heads : f.int('num_key_value_heads', 1);
  f.check(heads % kvHeads === 0, 'num_key_value_heads', `must divide num_attention_heads (${heads})`);
  const explicitHeadDim = json.head_dim !== undefined && json.head_dim !== null;
  if (!explicitHeadDim) f.check(hiddenSize % heads === 0, 'hidden_size', `must be divisible by num_attention_heads (${heads}) when head_dim is not given`);
  const headDim = explicitHeadDim ? f.int('head_dim', 2) : hiddenSize / heads;
  f.check(Number.isInteger(headDim) && headDim % 2 === 0, 'head_dim', 'must be an even integer (rotary embeddings rotate pairs)');
  if (json.rope_scaling !== undefined && json.rope_scaling !== null) {
    throw new FicocoError(`${source}: text_config.rope_scaling is set (${JSON.stringify(json.rope_scaling)}); scaled rotary embeddings are not supported yet.`, 'config');
  }
  const attentionBias = f.bool('attention_bias');
  return {
    modelType,
    hiddenSize,
    intermediateSize: f.int('intermediate_size', 1),
    layers: f.int('num_hidden_layers', 1),
    heads,
    kvHeads,
    headDim,
    rmsNormEps: f.number('rms_norm_eps'),
    ropeTheta: f.number('rope_theta'),
    vocabSize: f.int('vocab_size', 1),
    maxPositions: f.int('max_position_embeddings', 1),
    tieWordEmbeddings: f.bool('tie_word_embeddings'),
    // Qwen2 always has q/k/v biases and none on o_proj; Llama's attention_bias covers all four.
    qkvBias: modelType === 'qwen2' || attentionBias,
    outputBias: modelType !== 'qwen2' && attentionBias,
    mlpBias: f.bool('mlp_bias'),
    activation: f.activation('hidden_act'),
  };
}

function asObject(value: unknown, source: string, where: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FicocoError(`${source}: ${where} must be a JSON object.`, 'config');
  }
  return value as Json;
}

const ACTIVATIONS: Record<string, Activation> = { quick_gelu: 'quick_gelu', gelu: 'gelu', gelu_pytorch_tanh: 'gelu_tanh', gelu_new: 'gelu_tanh', silu: 'silu', swish: 'silu' };

/** Typed field access that names the offending field in its error. */
class Fields {
  constructor(private readonly json: Json, private readonly source: string, private readonly prefix: string) {}

  private fail(key: string, expected: string): never {
    throw new FicocoError(`${this.source}: ${this.prefix}${key} is ${JSON.stringify(this.json[key])}; expected ${expected}.`, 'config');
  }

  check(ok: boolean, key: string, expected: string): void {
    if (!ok) this.fail(key, expected);
  }

  number(key: string): number {
    const value = this.json[key];
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(key, 'a number');
    return value;
  }

  int(key: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.json[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(key, max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`);
    }
    return value;
  }

  bool(key: string): boolean {
    const value = this.json[key];
    if (typeof value !== 'boolean') this.fail(key, 'true or false');
    return value;
  }

  oneOf<T extends string>(key: string, options: readonly T[]): T {
    const value = this.json[key];
    if (!options.includes(value as T)) this.fail(key, `one of ${options.map((o) => JSON.stringify(o)).join(', ')}`);
    return value as T;
  }

  activation(key: string): Activation {
    const value = this.json[key];
    const known = typeof value === 'string' ? ACTIVATIONS[value] : undefined;
    if (!known) this.fail(key, `one of ${Object.keys(ACTIVATIONS).join(', ')}`);
    return known;
  }
}
