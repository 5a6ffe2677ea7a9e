/**
 * LLaVA (config.json model_type llava, LLaVA-1.5 style): a vision tower, an MLP projector and a decoder, one image
 * per placeholder token, one tile per image. The vision tower and decoder are whichever parts.ts has for their
 * model_type; transformers' defaults fill what llava-hf configs leave out.
 */
import type { Activation } from '../graph/ops';
import type { PublishedReduction } from '../recommendation';
import type { WeightQuantizer } from '../weights/quantizedCache';
import type { WeightIndex } from '../weights/safetensors';
import type { DecoderKind, ModelConfig, ModelFamily, ModelTowers, VisionTowerKind } from './family';
import { Fields, Json, asObject } from './fields';
import { decoderKind, visionTowerKind } from './parts';
import { projectorBlock } from './projector';
import { WeightScope } from './weights';

export const IMAGE_FEATURES = 'image_features';

export interface LlavaConfig extends ModelConfig {
  projector: { activation: Activation; bias: boolean };
  /** 'default' drops the class token before the projector, 'full' keeps it */
  visionFeatureSelect: 'default' | 'full';
}

/** What a llava-style family's config.json leaves out: its top-level fields, its vision and text configs. */
export interface LlavaDefaults {
  fields: Json;
  vision: Json;
  text: Json;
}

/** The tower LlavaConfig builds when config.json has no vision_config at all (CLIP ViT-L/14 at 336 px). */
const CLIP_L_336_CONFIG: Json = {
  model_type: 'clip_vision_model',
  hidden_size: 1024,
  intermediate_size: 4096,
  num_hidden_layers: 24,
  num_attention_heads: 16,
  image_size: 336,
  patch_size: 14,
};

/** llava-hf configs store only what differs from these defaults. */
export const LLAVA_DEFAULTS: LlavaDefaults = {
  fields: {
    image_token_index: 32000,
    projector_hidden_act: 'gelu',
    vision_feature_layer: -2,
    vision_feature_select_strategy: 'default',
    multimodal_projector_bias: true,
  },
  vision: CLIP_L_336_CONFIG,
  text: { model_type: 'llama' },
};

/** The llava family: its config, and towers built with the vision tower and decoder it names. */
export const llava: ModelFamily = (json, source) => {
  const config = parseLlavaConfig(json, source);
  const parts = {
    vision: visionTowerKind(config.vision.modelType, source),
    decoder: decoderKind(config.text.modelType, source),
  };
  return {
    config,
    build: (weights, quantizer) => llavaTowers(config, parts, weights, quantizer),
    ...(isLlava15(config) ? { publishedReduction: LLAVA_15_PUBLISHED } : {}),
  };
};

/** The FiCoCo paper's headline setting for LLaVA-1.5 (Table 1, 64 of 576 visual tokens at 1.5 TFLOPs). */
const LLAVA_15_PUBLISHED: PublishedReduction = {
  method: 'ficoco-v',
  budget: { tokens: 64 },
  source: 'FiCoCo-V at 64 of 576 visual tokens, the FiCoCo paper (arXiv 2411.17686) on LLaVA-1.5 7B and 13B',
};

/** LLaVA-1.5 7B or 13B: CLIP ViT-L/14 at 336 px before a Vicuna (Llama) decoder of 4096 or 5120 wide. */
function isLlava15(config: LlavaConfig): boolean {
  const { vision, text } = config;
  return (
    vision.modelType === 'clip_vision_model' &&
    vision.imageSize === 336 &&
    vision.patchSize === 14 &&
    vision.hiddenSize === 1024 &&
    vision.layers === 24 &&
    text.modelType === 'llama' &&
    [4096, 5120].includes(text.hiddenSize)
  );
}

export function parseLlavaConfig(root: Json, source: string, defaults = LLAVA_DEFAULTS): LlavaConfig {
  const fields = new Fields({ ...defaults.fields, ...root }, source, '');
  const visionJson = asObject(root.vision_config ?? defaults.vision, source, 'vision_config');
  const vision = visionTowerKind(visionJson.model_type ?? defaults.vision.model_type, source).parseConfig(
    visionJson,
    source,
  );
  const textJson = asObject(root.text_config ?? defaults.text, source, 'text_config');
  const text = decoderKind(textJson.model_type ?? defaults.text.model_type, source).parseConfig(textJson, root, source);
  const featureLayer = fields.int('vision_feature_layer', -vision.layers - 1, vision.layers);
  // 0 and −(L + 1) name the patch embeddings: a tower of no layers, which no LLaVA reads and no reduction can run in.
  fields.check(
    featureLayer !== 0 && featureLayer !== -vision.layers - 1,
    'vision_feature_layer',
    `a layer of the ${vision.layers}-layer tower: 1 to ${vision.layers}, or −${vision.layers} to −1`,
  );
  const visionFeatureSelect = fields.oneOf('vision_feature_select_strategy', ['default', 'full'] as const);
  // transformers drops the first feature for 'default' whatever it is; without a class token that is a patch.
  fields.check(
    vision.classToken || visionFeatureSelect === 'full',
    'vision_feature_select_strategy',
    `must be "full" for a ${vision.modelType} tower, which has no class token for "default" to drop`,
  );
  return {
    modelType: String(root.model_type),
    imageTokenId:
      root.image_token_id !== undefined ? fields.int('image_token_id', 0) : fields.int('image_token_index', 0),
    projector: {
      activation: fields.activation('projector_hidden_act'),
      bias: fields.bool('multimodal_projector_bias'),
    },
    visionLayers: featureLayer < 0 ? vision.layers + 1 + featureLayer : featureLayer,
    visionFeatureSelect,
    classTokenInFeatures: vision.classToken && visionFeatureSelect === 'full',
    vision,
    text,
  };
}

/**
 * Binds config.json to the checkpoint's tensors, under either naming transformers has used; `quantizer` takes the
 * decoder layers' linear layers, and the vision tower's where its mode quantizes them.
 */
export function llavaTowers(
  config: LlavaConfig,
  parts: { vision: VisionTowerKind; decoder: DecoderKind },
  weights: WeightIndex,
  quantizer?: WeightQuantizer,
): ModelTowers {
  const { vision: visionKind, decoder } = parts;
  const vision = WeightScope.find(
    weights,
    [...visionKind.weightPrefixes],
    visionKind.probe,
    `${config.vision.modelType} vision tower`,
    quantizer?.quantizesVisionTower ? quantizer : undefined,
  );
  const projector = WeightScope.find(
    weights,
    ['multi_modal_projector.', 'model.multi_modal_projector.'],
    'linear_1.weight',
    'multi-modal projector',
  );
  const text = WeightScope.find(
    weights,
    ['language_model.model.', 'model.language_model.'],
    'embed_tokens.weight',
    'language model',
    quantizer,
  );
  const lmHead = config.text.tieWordEmbeddings
    ? text
    : WeightScope.find(
        weights,
        ['language_model.', ''],
        'lm_head.weight',
        'lm_head (and tie_word_embeddings is false)',
        quantizer,
      );
  const side = config.vision.patchesPerSide;
  const tower = visionKind.tower(config.vision, vision, config.visionLayers - 1);
  return {
    vision: {
      name: 'vision',
      input: tower.input,
      output: { name: IMAGE_FEATURES, dims: ['tokens', config.text.hiddenSize] },
      blocks: [...tower.blocks, projectorBlock(config, projector)],
    },
    embed: decoder.embeddingTower(config.text, text),
    decoder: decoder.decoderTower(config.text, text, lmHead),
    image: { grid: { rows: side, cols: side }, classToken: config.vision.classToken },
  };
}
