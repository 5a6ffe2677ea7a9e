/**
 * The seam between the generic engine and the model architectures. A model family (config.json's model_type, e.g.
 * llava) parses its config and builds three towers from the checkpoint; it is made of parts chosen the same way —
 * a vision tower (vision_config.model_type) and a decoder (text_config.model_type). Adding one is a new file under
 * src/engine/models/ and a line in registry.ts or parts.ts; the engine only reads what these interfaces say.
 */
import type { AnyresSpec } from '../../common/anyres';
import type { LlmArch } from '../../flops/llm';
import type { Activation } from '../graph/ops';
import type { Tower } from '../graph/segment';
import type { PublishedReduction } from '../recommendation';
import type { WeightQuantizer } from '../weights/quantizedCache';
import type { WeightIndex } from '../weights/safetensors';
import type { Json } from './fields';
import type { WeightScope } from './weights';

/** What every vision tower's config gives the engine; a tower kind's own config extends it. */
export interface VisionConfig {
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  imageSize: number;
  patchSize: number;
  /** ⌊imageSize / patchSize⌋: the patch convolution has no padding (SigLIP's 384 px / 14 leaves 6 px unseen) */
  patchesPerSide: number;
  layerNormEps: number;
  activation: Activation;
  /** a class token precedes the patches (CLIP's [CLS]); SigLIP has none */
  classToken: boolean;
}

/**
 * What every decoder's config gives the engine (all decoders so far are Llama-style): the FLOPs model's sizes, and
 * more.
 */
export interface TextConfig extends LlmArch {
  modelType: string;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
  /**
   * the longest context, prompt plus answer: max_position_embeddings, or the sliding attention window where one is
   * smaller (full attention equals the window's inside it)
   */
  maxPositions: number;
  tieWordEmbeddings: boolean;
  /** biases on the q, k, v projections */
  qkvBias: boolean;
  /** bias on the output projection */
  outputBias: boolean;
  mlpBias: boolean;
  activation: Activation;
}

/** A parsed config.json, as the generic engine reads it; a family's own config extends it. */
export interface ModelConfig {
  modelType: string;
  imageTokenId: number;
  /** vision layers that run (0 … visionLayers−1); the last one's output goes to the projector */
  visionLayers: number;
  vision: VisionConfig;
  text: TextConfig;
  /** the vision tower's class token goes on to the projector with the patches (LLaVA's 'full' feature strategy) */
  classTokenInFeatures: boolean;
  /** AnyRes tiling (LLaVA-NeXT, LLaVA-OneVision): the tower sees a base image and the tiles of the image at its size */
  tiling?: AnyresSpec;
  /**
   * several images in one question are not tiled: each is padded to a square of the mean colour and seen whole, then
   * followed by one row end (LLaVA-OneVision's processor and model)
   */
  squareWhenSeveral?: boolean;
}

/** A model as three towers: pixels → image features, token ids → embeddings, embeddings → logits. */
export interface ModelTowers {
  vision: Tower;
  embed: Tower;
  decoder: Tower;
  /** how one image's tokens sit in the vision tower */
  image: {
    /** the patch grid of one image */
    grid: { rows: number; cols: number };
    /** a class token precedes the patches (CLIP's [CLS]); SigLIP has none */
    classToken: boolean;
    /** a tiled image's learned row end (image_newline, text hidden size): it follows every row of the tiles' grid */
    rowEnd?: Float32Array;
  };
}

/** A family of models, chosen by config.json's model_type: it reads a config.json into a model it can build. */
export type ModelFamily = (json: Json, source: string) => FamilyModel;

export interface FamilyModel {
  /** config.json, validated */
  config: ModelConfig;
  /** binds the config to the checkpoint's tensors; `quantizer` takes the decoder's linear layers (and the tower's where its mode takes it) */
  build(weights: WeightIndex, quantizer?: WeightQuantizer): ModelTowers;
  /** the reduction published for this architecture, which `auto` uses when the folder has no measured one */
  publishedReduction?: PublishedReduction;
}

/** A vision tower architecture, chosen by vision_config.model_type. */
export interface VisionTowerKind {
  /** its weights in the checkpoint, under any of these prefixes (transformers has renamed them) */
  weightPrefixes: readonly string[];
  /** a tensor every checkpoint of it has, to find the prefix */
  probe: string;
  parseConfig(json: Json, source: string): VisionConfig;
  /** the pixel input, then the blocks up to `lastLayer` (inclusive), hook sites `vision:<l>` and `features` */
  tower(config: VisionConfig, weights: WeightScope, lastLayer: number): Pick<Tower, 'input' | 'blocks'>;
}

/** A decoder architecture, chosen by text_config.model_type. */
export interface DecoderKind {
  /** text_config (with the root config, which may hold tie_word_embeddings) */
  parseConfig(json: Json, root: Json, source: string): TextConfig;
  embeddingTower(config: TextConfig, weights: WeightScope): Tower;
  decoderTower(config: TextConfig, weights: WeightScope, lmHead: WeightScope): Tower;
}
