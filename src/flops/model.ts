/**
 * FLOPs of a whole LLaVA-style run — vision tower, projector, decoder prefill — from a model description
 * (preset or config.json) and a RunShape that says how many tokens entered each layer. A reduction
 * method's schedule (or a real run's stats) produces the RunShape; unreducedShape() is the baseline.
 */
import { type AnyresSpec, anyresLayout, type Size } from '../common/anyres';
import { checkCount, FlopsError } from './errors';
import { kvBytesPerToken, kvCacheBytes, LlmArch, llmPrefillFlops, type ScoreCount } from './llm';
import { ProjectorArch, projectorFlops, VisionArch, visionTokensPerImage, visionTowerFlops } from './vision';

export interface ModelArch {
  name: string;
  vision: VisionArch;
  /** visual tokens one image hands to the language model: the patches ('default' drops [CLS]) or all ('full') */
  visualTokensPerImage: number;
  /** vision tower passes per image: 1, or for a tiled image its tiles and the base image */
  visionPassesPerImage: number;
  /** how the family tiles an image at its own size; archForImage() fills the two counts above from it */
  anyres?: AnyresSpec;
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

/** `scores`: which of the decoder's attention scores count ('all', the paper's accounting, unless told). */
export function runFlops(arch: ModelArch, shape: RunShape, scores: ScoreCount = 'all'): RunFlops {
  if (shape.visionMlp && shape.visionMlp.length !== shape.vision.length) {
    throw new FlopsError(
      `visionMlp has ${shape.visionMlp.length} image lists; vision has ${shape.vision.length}.`,
      'input',
    );
  }
  const vision = shape.vision.reduce(
    (sum, layers, image) => sum + visionTowerFlops(arch.vision, layers, shape.visionMlp?.[image]),
    0,
  );
  const projector = projectorFlops(arch.projector, shape.projector);
  const llm = llmPrefillFlops(arch.llm, shape.llm, shape.llmMlp, scores);
  return { vision, projector, llm, total: vision + projector + llm };
}

/** KV-cache bytes after prefill of a run (each decoder layer caches the tokens that entered it). */
export function runKvCacheBytes(arch: ModelArch, shape: RunShape, bytesPerElement = 2): number {
  return kvCacheBytes(arch.llm, shape.llm, bytesPerElement);
}

/**
 * Bytes a run holds at its peak besides the weights: the KV cache of the prompt and the answer, plus the largest
 * layer's working set (layerWorkingSetBytes). `queryChunk` is how many prompt tokens the decoder takes at once (all of
 * them when absent). `newDecoderArenas`: how many decoder segments of the run's plan must grow a working set for it
 * (ONNX Runtime keeps an arena per session, as large as its largest run); one when absent.
 */
export function peakRunBytes(
  arch: ModelArch,
  run: { promptTokens: number; answerTokens: number; queryChunk?: number; newDecoderArenas?: number },
  bytesPerElement: number,
): number {
  const { promptTokens } = run;
  const queries = Math.min(promptTokens, run.queryChunk ?? promptTokens);
  const decoder = (run.newDecoderArenas ?? 1) * layerWorkingSetBytes(arch.llm, queries, promptTokens, bytesPerElement);
  const visionTokens = visionTokensPerImage(arch.vision);
  const vision = layerWorkingSetBytes(arch.vision, visionTokens, visionTokens, bytesPerElement);
  return kvBytesPerToken(arch.llm, bytesPerElement) * (run.promptTokens + run.answerTokens) + Math.max(decoder, vision);
}

/**
 * One layer's working set for `queries` rows over `keys` keys: attention logits and probabilities
 * (2 · heads · q · n), the MLP's gate, up and their product (3 · q · intermediate) and a few copies of the hidden
 * states (4 · q · hidden).
 */
function layerWorkingSetBytes(
  layer: { hiddenSize: number; intermediateSize: number; heads: number },
  queries: number,
  keys: number,
  bytesPerElement: number,
): number {
  const { heads, intermediateSize, hiddenSize } = layer;
  return bytesPerElement * (2 * heads * queries * keys + 3 * queries * intermediateSize + 4 * queries * hiddenSize);
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
 * A reduction between the projector and the decoder: the tower and the projector run in full, then `visualTokens`
 * (all images together) go into every decoder layer with the text.
 */
export function reducedBeforeLlmShape(arch: ModelArch, prompt: PromptSize & { visualTokens: number }): RunShape {
  checkCount(prompt.images, 'images');
  checkCount(prompt.textTokens, 'text tokens');
  checkCount(prompt.visualTokens, 'visual tokens kept');
  const available = prompt.images * arch.visualTokensPerImage;
  if (prompt.visualTokens > available) {
    throw new FlopsError(
      `${prompt.visualTokens} visual tokens kept, but ${prompt.images} image(s) give only ${available} ` +
        `(${arch.visualTokensPerImage} each).`,
      'input',
    );
  }
  const passes = prompt.images * arch.visionPassesPerImage;
  return fullTowerShape(arch, passes, passes * projectedPerPass(arch), prompt.visualTokens, prompt.textTokens);
}

/** What one image costs: vision tower passes, and visual tokens for the decoder. */
export interface ImageCost {
  passes: number;
  tokens: number;
}

/** An image of this size seen the usual way (a tiled family tiles it; others see one pass). */
export function imageCost(arch: ModelArch, size: Size): ImageCost {
  const image = archForImage(arch, size);
  return { passes: image.visionPassesPerImage, tokens: image.visualTokensPerImage };
}

/** The shape of a run without reduction on images that cost this much. */
export function unreducedShapeAt(arch: ModelArch, images: readonly ImageCost[], textTokens: number): RunShape {
  checkCount(textTokens, 'text tokens');
  const passes = images.reduce((sum, image) => sum + image.passes, 0);
  const visual = images.reduce((sum, image) => sum + image.tokens, 0);
  return fullTowerShape(arch, passes, passes * projectedPerPass(arch), visual, textTokens);
}

/**
 * Features one tower pass hands the projector, which runs per pass: a tiled image's are unpadded, shrunk and given
 * their row ends only after it.
 */
function projectedPerPass(arch: ModelArch): number {
  return arch.anyres?.baseTokens ?? arch.visualTokensPerImage;
}

/** Every vision pass runs in full; `projected` tokens go through the projector, `visualTokens` through the decoder. */
function fullTowerShape(
  arch: ModelArch,
  passes: number,
  projected: number,
  visualTokens: number,
  textTokens: number,
): RunShape {
  const perPass = new Array<number>(arch.vision.layersRun).fill(visionTokensPerImage(arch.vision));
  return {
    vision: Array.from({ length: passes }, () => perPass.slice()),
    projector: projected,
    llm: new Array<number>(arch.llm.layers).fill(visualTokens + textTokens),
  };
}

/** The architecture as it runs on an image of this size: a tiled family's passes and tokens for it. */
export function archForImage(arch: ModelArch, image: Size): ModelArch {
  if (!arch.anyres) return arch;
  const layout = anyresLayout(arch.anyres, image);
  return {
    ...arch,
    name: `${arch.name} @ ${image.width}×${image.height}`,
    visionPassesPerImage: layout.tiles.rows * layout.tiles.cols + 1,
    visualTokensPerImage: layout.tokens,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Presets

const CLIP_L_336: VisionArch = {
  hiddenSize: 1024,
  intermediateSize: 4096,
  heads: 16,
  layers: 24,
  layersRun: 23,
  imageSize: 336,
  patchSize: 14,
  channels: 3,
  classToken: true,
};

/** SigLIP so400m-patch14-384 as LLaVA-OneVision uses it: cut to 26 layers, every layer's output taken. */
const SIGLIP_SO400M_384: VisionArch = {
  hiddenSize: 1152,
  intermediateSize: 4304,
  heads: 16,
  layers: 26,
  layersRun: 26,
  imageSize: 384,
  patchSize: 14,
  channels: 3,
  classToken: false,
};

/** LLaVA-NeXT's image_grid_pinpoints (height, width): up to 2×2 tiles of 336 px, or 1×3 / 3×1. */
const NEXT_PINPOINTS = [
  [336, 672],
  [672, 336],
  [672, 672],
  [1008, 336],
  [336, 1008],
] as const;

/** LLaVA-OneVision's: every grid of 1 to 6 tiles of 384 px a side. */
const ONEVISION_PINPOINTS = [1, 2, 3, 4, 5, 6].flatMap((rows) =>
  [1, 2, 3, 4, 5, 6].map((cols) => [rows * 384, cols * 384] as const),
);

function llama(hiddenSize: number, intermediateSize: number, layers: number, heads: number, kvHeads = heads): LlmArch {
  return { hiddenSize, intermediateSize, layers, heads, kvHeads, headDim: hiddenSize / heads };
}

function llava(name: string, llm: LlmArch): ModelArch {
  return {
    name,
    vision: { ...CLIP_L_336 },
    visualTokensPerImage: 576,
    visionPassesPerImage: 1,
    projector: { inputSize: 1024, hiddenSize: llm.hiddenSize, outputSize: llm.hiddenSize },
    llm,
  };
}

/** A tiled family: one tile's counts until archForImage() says how an image is tiled. */
function tiled(name: string, vision: VisionArch, anyres: AnyresSpec, llm: LlmArch): ModelArch {
  return {
    name,
    vision,
    visualTokensPerImage: anyres.baseTokens,
    visionPassesPerImage: 1,
    anyres,
    projector: { inputSize: vision.hiddenSize, hiddenSize: llm.hiddenSize, outputSize: llm.hiddenSize },
    llm,
  };
}

/** Architectures by name: the paper's models and the TinyLLaVA shape. */
export const ARCH_PRESETS: Readonly<Record<string, ModelArch>> = {
  'llava-1.5-7b': llava('llava-1.5-7b', llama(4096, 11008, 32, 32)),
  'llava-1.5-13b': llava('llava-1.5-13b', llama(5120, 13824, 40, 40)),
  'tinyllava-clip-tinyllama': llava('tinyllava-clip-tinyllama', llama(2048, 5632, 22, 32, 4)),
  // llava-hf/llava-v1.6-mistral-7b-hf: CLIP-L/336 tiles, Mistral-7B (grouped-query attention, 8 KV heads).
  'llava-next-mistral-7b': tiled(
    'llava-next-mistral-7b',
    { ...CLIP_L_336 },
    { tileSize: 336, featuresPerSide: 24, pinpoints: NEXT_PINPOINTS, baseTokens: 576 },
    llama(4096, 14336, 32, 32, 8),
  ),
  // llava-hf/llava-onevision-qwen2-0.5b-ov-hf: SigLIP tiles, anyres_max_9, Qwen2-0.5B (14 heads, 2 KV heads).
  'llava-onevision-qwen2-0.5b': tiled(
    'llava-onevision-qwen2-0.5b',
    { ...SIGLIP_SO400M_384 },
    { tileSize: 384, featuresPerSide: 27, pinpoints: ONEVISION_PINPOINTS, baseTokens: 729, maxTiles: 9 },
    llama(896, 4864, 24, 14, 2),
  ),
};

/** A preset by name (a copy); an unknown name is an error listing the known ones. */
export function archPreset(name: string): ModelArch {
  const arch = Object.hasOwn(ARCH_PRESETS, name) ? ARCH_PRESETS[name] : undefined;
  if (!arch)
    throw new FlopsError(`Unknown architecture "${name}"; known: ${Object.keys(ARCH_PRESETS).join(', ')}.`, 'input');
  return structuredClone(arch);
}
