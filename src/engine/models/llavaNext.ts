/**
 * LLaVA-NeXT (config.json model_type llava_next) and LLaVA-OneVision (llava_onevision): LLaVA with AnyRes tiling. The
 * tower runs on the whole image squashed to one tile (the base image) and on each tile of the image at its best
 * pinpoint resolution; the tiles' features become one grid, cut back to the image, shrunk for anyres_max_N
 * (OneVision), with a learned image_newline after every row (tiledFeatures.ts). The geometry is src/common/anyres.ts.
 */
import type { AnyresSpec } from '../../common/anyres';
import { MAX_PREPROCESSOR_SIDE } from '../image/preprocess';
import type { ModelFamily } from './family';
import { Fields, Json } from './fields';
import { LLAVA_DEFAULTS, LlavaConfig, LlavaDefaults, llavaTowers, parseLlavaConfig } from './llava';
import { decoderKind, visionTowerKind } from './parts';
import { WeightScope } from './weights';

/** More resolutions than any tiling model lists (OneVision: 36) is a hostile file. */
const MAX_PINPOINTS = 256;
/** Tiles one pinpoint may hold: released models tile up to 6 × 6; each tile is a whole tower pass. */
const MAX_TILES = 64;

/** LlavaNextConfig's defaults: CLIP ViT-L/14-336 before a Llama decoder, five pinpoints of two or three tiles. */
const LLAVA_NEXT_DEFAULTS: LlavaDefaults = {
  ...LLAVA_DEFAULTS,
  fields: {
    ...LLAVA_DEFAULTS.fields,
    image_grid_pinpoints: [
      [336, 672],
      [672, 336],
      [672, 672],
      [1008, 336],
      [336, 1008],
    ],
  },
};

/** LlavaOnevisionConfig's defaults: SigLIP so400m/384 cut to 26 layers, Qwen2, 1–6 tiles a side, anyres_max_9. */
const LLAVA_ONEVISION_DEFAULTS: LlavaDefaults = {
  fields: {
    image_token_index: 151646,
    projector_hidden_act: 'gelu',
    vision_feature_layer: -1,
    vision_feature_select_strategy: 'full',
    multimodal_projector_bias: true,
    vision_aspect_ratio: 'anyres_max_9',
    image_grid_pinpoints: [1, 2, 3, 4, 5, 6].flatMap((rows) =>
      [1, 2, 3, 4, 5, 6].map((cols) => [384 * rows, 384 * cols]),
    ),
  },
  vision: {
    model_type: 'siglip_vision_model',
    hidden_size: 1152,
    intermediate_size: 4304,
    patch_size: 14,
    image_size: 384,
    num_hidden_layers: 26,
    num_attention_heads: 16,
  },
  text: { model_type: 'qwen2' },
};

export const llavaNext: ModelFamily = tiledLlava(LLAVA_NEXT_DEFAULTS, { shrinks: false, squareWhenSeveral: false });
export const llavaOnevision: ModelFamily = tiledLlava(LLAVA_ONEVISION_DEFAULTS, {
  shrinks: true,
  squareWhenSeveral: true,
});

/**
 * A tiling llava family; `shrinks`: its config names anyres_max_N in vision_aspect_ratio; `squareWhenSeveral`: it tiles
 * an image only when the question has no other.
 */
function tiledLlava(defaults: LlavaDefaults, options: { shrinks: boolean; squareWhenSeveral: boolean }): ModelFamily {
  return (json, source) => {
    const config = {
      ...parseTiledConfig(json, source, defaults, options.shrinks),
      ...(options.squareWhenSeveral ? { squareWhenSeveral: true } : {}),
    };
    const parts = {
      vision: visionTowerKind(config.vision.modelType, source),
      decoder: decoderKind(config.text.modelType, source),
    };
    return {
      config,
      build: (weights, quantizer) => {
        const towers = llavaTowers(config, parts, weights, quantizer);
        const scope = WeightScope.find(weights, ['', 'model.'], 'image_newline', 'image_newline (the row end)');
        const rowEnd = scope.get('image_newline', [config.text.hiddenSize]);
        return { ...towers, image: { ...towers.image, rowEnd: weights.readFloat32(rowEnd.name) } };
      },
    };
  };
}

export function parseTiledConfig(
  root: Json,
  source: string,
  defaults: LlavaDefaults,
  shrinks: boolean,
): LlavaConfig & { tiling: AnyresSpec } {
  const config = parseLlavaConfig(root, source, defaults);
  const fields = new Fields({ ...defaults.fields, ...root }, source, '');
  const { vision } = config;
  // The base image's features are viewed as a square grid; a class token in them would not fit it.
  fields.check(
    !config.classTokenInFeatures,
    'vision_feature_select_strategy',
    `"default" for a ${vision.modelType} tower with a class token: a tiled image's features are a patch grid`,
  );
  const features = vision.patchesPerSide;
  return {
    ...config,
    tiling: {
      tileSize: vision.imageSize,
      featuresPerSide: features,
      pinpoints: pinpoints(fields, root.image_grid_pinpoints, defaults.fields.image_grid_pinpoints, vision.imageSize),
      baseTokens: features * features,
      ...(shrinks
        ? { maxTiles: maxTiles(fields, root.vision_aspect_ratio ?? defaults.fields.vision_aspect_ratio) }
        : {}),
    },
  };
}

/**
 * image_grid_pinpoints: [height, width] resolutions, each a whole number of tiles and at most 4096 px a side; the
 * family's `defaults` where config.json lists none.
 */
function pinpoints(fields: Fields, listed: unknown, defaults: unknown, tileSize: number): [number, number][] {
  const key = 'image_grid_pinpoints';
  const value = listed ?? defaults;
  const expected =
    `a list of 1 to ${MAX_PINPOINTS} [height, width] pairs, multiples of ${tileSize} up to ` +
    `${MAX_PREPROCESSOR_SIDE}, of at most ${MAX_TILES} tiles each` +
    (listed === undefined
      ? `; config.json lists none, and these are the family's defaults, which its ${tileSize}-px image_size does ` +
        "not tile: list the model's own there"
      : '');
  const isSide = (side: unknown) =>
    typeof side === 'number' &&
    Number.isInteger(side) &&
    side > 0 &&
    side % tileSize === 0 &&
    side <= MAX_PREPROCESSOR_SIDE;
  const list = Array.isArray(value) ? (value as unknown[]) : [];
  fields.check(
    list.length > 0 &&
      list.length <= MAX_PINPOINTS &&
      list.every(
        (pair) =>
          Array.isArray(pair) &&
          pair.length === 2 &&
          pair.every(isSide) &&
          (pair[0] / tileSize) * (pair[1] / tileSize) <= MAX_TILES,
      ),
    key,
    expected,
  );
  return list.map((pair) => [...(pair as [number, number])]);
}

/** vision_aspect_ratio "anyres_max_N": grids above about N tiles' worth are shrunk to it. */
function maxTiles(fields: Fields, value: unknown): number {
  const match = typeof value === 'string' ? /^anyres_max_([1-9]\d?)$/.exec(value) : null;
  fields.check(match !== null, 'vision_aspect_ratio', '"anyres_max_N" with N from 1 to 99');
  return Number(match?.[1]);
}
