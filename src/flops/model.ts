/**
 * FLOPs of a whole LLaVA-style run — vision tower, projector, decoder prefill — from a model description
 * (preset or config.json) and a RunShape that says how many tokens entered each layer. A reduction
 * method's schedule (or a real run's stats) produces the RunShape; unreducedShape() is the baseline.
 */
import { checkCount, FlopsError } from './errors';
import { kvCacheBytes, LlmArch, llmPrefillFlops } from './llm';
import { ProjectorArch, projectorFlops, VisionArch, visionTokensPerImage, visionTowerFlops } from './vision';

export interface ModelArch {
  name: string;
  vision: VisionArch;
  /** visual tokens one image hands to the projector: the patches ('default' drops [CLS]) or all ('full') */
  visualTokensPerImage: number;
  projector: ProjectorArch;
  llm: LlmArch;
}

/** How many tokens entered each layer of one run (prefill). */
export interface RunShape {
  /** one list per image: tokens entering each vision layer that runs (arch.vision.layersRun entries) */
  vision: readonly (readonly number[])[];
  /** optional, same layout: tokens entering each vision layer's MLP half (in-layer reduction); default `vision` */
  visionMlp?: readonly (readonly number[])[];
  /** tokens entering the projector, all images together */
  projector: number;
  /** tokens entering each decoder layer (arch.llm.layers entries), text and visual together */
  llm: readonly number[];
  /** optional: tokens entering each decoder layer's MLP half (in-layer reduction); default `llm` */
  llmMlp?: readonly number[];
}

/** FLOPs of a run by part. `llm` alone is the paper's (LLM-Viewer's) prefill count. */
export interface RunFlops {
  vision: number;
  projector: number;
  llm: number;
  total: number;
}

export function runFlops(arch: ModelArch, shape: RunShape): RunFlops {
  if (shape.visionMlp && shape.visionMlp.length !== shape.vision.length) {
    throw new FlopsError(`visionMlp has ${shape.visionMlp.length} image lists; vision has ${shape.vision.length}.`, 'input');
  }
  const vision = shape.vision.reduce((sum, layers, image) => sum + visionTowerFlops(arch.vision, layers, shape.visionMlp?.[image]), 0);
  const projector = projectorFlops(arch.projector, shape.projector);
  const llm = llmPrefillFlops(arch.llm, shape.llm, shape.llmMlp);
  return { vision, projector, llm, total: vision + projector + llm };
}

/** KV-cache bytes after prefill of a run (each decoder layer caches the tokens that entered it). */
export function runKvCacheBytes(arch: ModelArch, shape: RunShape, bytesPerElement = 2): number {
  return kvCacheBytes(arch.llm, shape.llm, bytesPerElement);
}

export interface PromptSize {
  images: number;
  /** prompt tokens besides the visual ones (system prompt, question, template) */
  textTokens: number;
}

/** The shape of a run without any reduction. */
export function unreducedShape(arch: ModelArch, prompt: PromptSize): RunShape {
  return reducedBeforeLlmShape(arch, { ...prompt, visualTokens: prompt.images * arch.visualTokensPerImage });
}

/**
 * A reduction at the vision tower's output (before the projector): the tower runs in full, then
 * `visualTokens` (all images together) go through the projector and into every decoder layer with the text.
 */
export function reducedBeforeLlmShape(arch: ModelArch, prompt: PromptSize & { visualTokens: number }): RunShape {
  checkCount(prompt.images, 'images');
  checkCount(prompt.textTokens, 'text tokens');
  checkCount(prompt.visualTokens, 'visual tokens kept');
  const available = prompt.images * arch.visualTokensPerImage;
  if (prompt.visualTokens > available) {
    throw new FlopsError(`${prompt.visualTokens} visual tokens kept, but ${prompt.images} image(s) give only ${available} (${arch.visualTokensPerImage} each).`, 'input');
  }
  const perImage = new Array<number>(arch.vision.layersRun).fill(visionTokensPerImage(arch.vision));
  return {
    vision: Array.from({ length: prompt.images }, () => perImage.slice()),
    projector: prompt.visualTokens,
    llm: new Array<number>(arch.llm.layers).fill(prompt.visualTokens + prompt.textTokens),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Presets

const CLIP_L_336: VisionArch = { hiddenSize: 1024, intermediateSize: 4096, heads: 16, layers: 24, layersRun: 23, imageSize: 336, patchSize: 14, channels: 3 };

function llama(hiddenSize: number, intermediateSize: number, layers: number, heads: number, kvHeads = heads): LlmArch {
  return { hiddenSize, intermediateSize, layers, heads, kvHeads, headDim: hiddenSize / heads };
}

function llava(name: string, llm: LlmArch): ModelArch {
  return { name, vision: { ...CLIP_L_336 }, visualTokensPerImage: 576, projector: { inputSize: 1024, hiddenSize: llm.hiddenSize, outputSize: llm.hiddenSize }, llm };
}

/** Architectures by name: the paper's models and the TinyLLaVA shape. */
export const ARCH_PRESETS: Readonly<Record<string, ModelArch>> = {
  'llava-1.5-7b': llava('llava-1.5-7b', llama(4096, 11008, 32, 32)),
  'llava-1.5-13b': llava('llava-1.5-13b', llama(5120, 13824, 40, 40)),
  'tinyllava-clip-tinyllama': llava('tinyllava-clip-tinyllama', llama(2048, 5632, 22, 32, 4)),
};

/** A preset by name (a copy); an unknown name is an error listing the known ones. */
export function archPreset(name: string): ModelArch {
  const arch = Object.hasOwn(ARCH_PRESETS, name) ? ARCH_PRESETS[name] : undefined;
  if (!arch) throw new FlopsError(`Unknown architecture "${name}"; known: ${Object.keys(ARCH_PRESETS).join(', ')}.`, 'input');
  return structuredClone(arch);
}

// ---------------------------------------------------------------------------------------------------------
// config.json

type Json = Record<string, unknown>;

/** transformers' config defaults per text model type (fields a llava-hf config.json leaves out). */
const TEXT_DEFAULTS: Record<string, Json> = {
  llama: { hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32 },
  mistral: { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8 },
  qwen2: { hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32 },
};

/** CLIPVisionConfig defaults (ViT-B/32 at 224 px), for fields a vision_config leaves out. */
const CLIP_DEFAULTS: Json = { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 32, num_channels: 3 };

/** The tower LlavaConfig builds when config.json has no vision_config at all: CLIP ViT-L/14 at 336 px. */
const LLAVA_VISION_CONFIG: Json = { model_type: 'clip_vision_model', hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 24, num_attention_heads: 16, image_size: 336, patch_size: 14 };

/**
 * The architecture described by a Hugging Face llava config.json object, with transformers' defaults for
 * missing fields (llava-hf/llava-1.5-7b-hf stores only a few text fields: the rest are LlamaConfig's).
 * `name` labels the result (e.g. the folder name).
 */
export function archFromConfig(json: unknown, name = 'config.json'): ModelArch {
  const root = object(json, 'the top level');
  if (root.model_type !== 'llava') {
    throw new FlopsError(`config.json: model_type is ${JSON.stringify(root.model_type)}; the FLOPs model supports "llava" (CLIP vision tower, MLP projector, Llama/Mistral/Qwen2 decoder).`, 'config');
  }
  // Vision tower
  const visionJson = root.vision_config === undefined || root.vision_config === null ? LLAVA_VISION_CONFIG : object(root.vision_config, 'vision_config');
  if (visionJson.model_type !== undefined && visionJson.model_type !== 'clip_vision_model') {
    throw new FlopsError(`config.json: vision_config.model_type is ${JSON.stringify(visionJson.model_type)}; supported: "clip_vision_model".`, 'config');
  }
  const v = new Fields({ ...CLIP_DEFAULTS, ...visionJson }, 'vision_config.');
  const layers = v.int('num_hidden_layers', 1);
  const imageSize = v.int('image_size', 1);
  const patchSize = v.int('patch_size', 1);
  const visionHidden = v.int('hidden_size', 1);
  const top = new Fields({ vision_feature_layer: -2, vision_feature_select_strategy: 'default', ...root }, '');
  const featureLayers = top.featureLayers('vision_feature_layer', layers);
  const select = top.oneOf('vision_feature_select_strategy', ['default', 'full']);
  const vision: VisionArch = {
    hiddenSize: visionHidden,
    intermediateSize: v.int('intermediate_size', 1),
    heads: v.int('num_attention_heads', 1),
    layers,
    layersRun: Math.max(...featureLayers),
    imageSize,
    patchSize,
    channels: v.int('num_channels', 1),
  };
  const patches = visionTokensPerImage(vision) - 1;
  // Decoder
  const textJson = root.text_config === undefined || root.text_config === null ? {} : object(root.text_config, 'text_config');
  const modelType = textJson.model_type ?? 'llama';
  const defaults = typeof modelType === 'string' && Object.hasOwn(TEXT_DEFAULTS, modelType) ? TEXT_DEFAULTS[modelType] : undefined;
  if (!defaults) {
    throw new FlopsError(`config.json: text_config.model_type is ${JSON.stringify(modelType)}; supported: ${Object.keys(TEXT_DEFAULTS).map((k) => `"${k}"`).join(', ')}.`, 'config');
  }
  const t = new Fields({ ...defaults, ...withoutNulls(textJson) }, 'text_config.');
  const hiddenSize = t.int('hidden_size', 1);
  const heads = t.int('num_attention_heads', 1);
  const kvHeads = t.has('num_key_value_heads') ? t.int('num_key_value_heads', 1) : heads;
  t.check(heads % kvHeads === 0, 'num_key_value_heads', `a divisor of num_attention_heads (${heads})`);
  const headDim = t.has('head_dim') ? t.int('head_dim', 1) : hiddenSize / heads;
  if (!t.has('head_dim')) t.check(Number.isInteger(headDim), 'hidden_size', `a multiple of num_attention_heads (${heads}) when head_dim is not given`);
  const llm: LlmArch = { hiddenSize, intermediateSize: t.int('intermediate_size', 1), layers: t.int('num_hidden_layers', 1), heads, kvHeads, headDim };
  return {
    name,
    vision,
    visualTokensPerImage: select === 'default' ? patches : patches + 1,
    projector: { inputSize: visionHidden * featureLayers.length, hiddenSize, outputSize: hiddenSize },
    llm,
  };
}

function object(value: unknown, where: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FlopsError(`config.json: ${where} must be a JSON object.`, 'config');
  return value as Json;
}

function withoutNulls(json: Json): Json {
  return Object.fromEntries(Object.entries(json).filter(([, value]) => value !== null && value !== undefined));
}

class Fields {
  constructor(private readonly json: Json, private readonly prefix: string) {}

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  check(ok: boolean, key: string, expected: string): void {
    if (!ok) throw new FlopsError(`config.json: ${this.prefix}${key} is ${JSON.stringify(this.json[key])}; expected ${expected}.`, 'config');
  }

  int(key: string, min: number): number {
    const value = this.json[key];
    this.check(typeof value === 'number' && Number.isInteger(value) && value >= min, key, `an integer ≥ ${min}`);
    return value as number;
  }

  oneOf<T extends string>(key: string, options: readonly T[]): T {
    const value = this.json[key];
    this.check(options.includes(value as T), key, `one of ${options.map((o) => JSON.stringify(o)).join(', ')}`);
    return value as T;
  }

  /** vision_feature_layer: one index or a list, each into hidden_states (negative from the end); returns layers needed per index. */
  featureLayers(key: string, layers: number): number[] {
    const value = this.json[key];
    const list = Array.isArray(value) ? value : [value];
    const ok = list.length > 0 && list.every((i) => typeof i === 'number' && Number.isInteger(i) && i >= -layers - 1 && i <= layers);
    this.check(ok, key, `an integer in [${-layers - 1}, ${layers}] or a non-empty list of them`);
    return (list as number[]).map((i) => (i < 0 ? layers + 1 + i : i));
  }
}
