import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { anyresLayout } from '../../src/common/anyres';
import { FicocoError } from '../../src/common/errors';
import type { ModelConfig } from '../../src/engine/models/family';
import { parseModelConfig } from '../../src/engine/models/registry';
import { bilinearResize, packTiledFeatures, packTiles } from '../../src/engine/models/tiledFeatures';
import type { TokenState } from '../../src/reduction/tokenState';

type Json = Record<string, unknown>;
const SOURCE = 'models/x/config.json';
const parse = (json: Json): ModelConfig => parseModelConfig(json, SOURCE).config;

/** llava-hf/llava-v1.6-mistral-7b-hf's config.json as the research notes describe it (anyres.md §1, §7), abridged. */
const LLAVA_NEXT_MISTRAL: Json = {
  architectures: ['LlavaNextForConditionalGeneration'],
  image_grid_pinpoints: [
    [336, 672],
    [672, 336],
    [672, 672],
    [1008, 336],
    [336, 1008],
  ],
  image_token_index: 32000,
  model_type: 'llava_next',
  projector_hidden_act: 'gelu',
  text_config: {
    architectures: ['MistralForCausalLM'],
    intermediate_size: 14336,
    max_position_embeddings: 32768,
    model_type: 'mistral',
    num_key_value_heads: 8,
    rms_norm_eps: 1e-5,
    rope_theta: 1000000.0,
    sliding_window: null,
    vocab_size: 32064,
  },
  use_image_newline_parameter: true,
  // vision_config: CLIP ViT-L/14-336, as LlavaNextConfig's default (the family's default here too).
  vision_feature_layer: -2,
  vision_feature_select_strategy: 'default',
};

/** A llava_onevision config that leaves LlavaOnevisionConfig's top-level defaults out. */
const LLAVA_ONEVISION_05B: Json = {
  architectures: ['LlavaOnevisionForConditionalGeneration'],
  model_type: 'llava_onevision',
  text_config: {
    model_type: 'qwen2',
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    max_position_embeddings: 32768,
    rope_theta: 1000000.0,
    vocab_size: 152000,
    tie_word_embeddings: true,
  },
  // A vision_config given is read with SiglipVisionConfig's own defaults (224 px), so configs spell the tower out.
  vision_config: {
    model_type: 'siglip_vision_model',
    hidden_size: 1152,
    intermediate_size: 4304,
    image_size: 384,
    patch_size: 14,
    num_hidden_layers: 26,
    num_attention_heads: 16,
    vision_use_head: false,
  },
};

function rejects(json: Json, field: string): void {
  assert.throws(
    () => parse(json),
    (error: unknown) =>
      error instanceof FicocoError && error.kind === 'config' && error.message.includes(field)
        ? true
        : assert.fail(`expected a config error naming ${field}, got ${String(error)}`),
  );
}

describe('tiled model families: config.json', () => {
  test('llava_next: CLIP tiles of 336 px, 24 × 24 features, five pinpoints, no shrinking', () => {
    const config = parse(LLAVA_NEXT_MISTRAL);
    assert.equal(config.modelType, 'llava_next');
    assert.equal(config.text.modelType, 'mistral');
    assert.equal(config.classTokenInFeatures, false);
    assert.deepEqual(config.tiling, {
      tileSize: 336,
      featuresPerSide: 24,
      pinpoints: LLAVA_NEXT_MISTRAL.image_grid_pinpoints,
      baseTokens: 576,
    });
    assert.equal(anyresLayout(config.tiling!, { width: 1920, height: 1080 }).tokens, 1948);
  });

  test("llava_onevision: LlavaOnevisionConfig's defaults fill SigLIP/384, 36 pinpoints and anyres_max_9", () => {
    const config = parse(LLAVA_ONEVISION_05B);
    assert.equal(config.imageTokenId, 151646);
    assert.equal(config.vision.modelType, 'siglip_vision_model');
    assert.equal(config.visionLayers, 26, 'vision_feature_layer −1 of the 26-layer tower');
    assert.equal(config.tiling?.tileSize, 384);
    assert.equal(config.tiling?.featuresPerSide, 27);
    assert.equal(config.tiling?.pinpoints.length, 36);
    assert.deepEqual(config.tiling?.pinpoints[7], [768, 768]);
    assert.equal(config.tiling?.maxTiles, 9);
    assert.equal(anyresLayout(config.tiling!, { width: 1920, height: 1080 }).tokens, 7269);
  });

  test('errors name the field', () => {
    rejects({ ...LLAVA_NEXT_MISTRAL, image_grid_pinpoints: [[336, 700]] }, 'image_grid_pinpoints');
    rejects({ ...LLAVA_NEXT_MISTRAL, image_grid_pinpoints: [] }, 'image_grid_pinpoints');
    rejects({ ...LLAVA_NEXT_MISTRAL, image_grid_pinpoints: [[336, 336 * 20]] }, 'image_grid_pinpoints');
    rejects({ ...LLAVA_NEXT_MISTRAL, vision_feature_select_strategy: 'full' }, 'vision_feature_select_strategy');
    rejects({ ...LLAVA_ONEVISION_05B, vision_aspect_ratio: 'anyres' }, 'vision_aspect_ratio');
    rejects({ ...LLAVA_ONEVISION_05B, vision_aspect_ratio: 'anyres_max_0' }, 'vision_aspect_ratio');
    // Each tile is a whole tower pass: a pinpoint of 12 × 12 tiles (4032 px a side) would be 145 passes an image.
    rejects({ ...LLAVA_NEXT_MISTRAL, image_grid_pinpoints: [[336 * 12, 336 * 12]] }, 'image_grid_pinpoints');
    parse({ ...LLAVA_NEXT_MISTRAL, image_grid_pinpoints: [[336 * 8, 336 * 8]] });
  });

  test("pinpoints config.json lacks are the family's defaults, and an error says so", () => {
    const { image_grid_pinpoints: _listed, ...unlisted } = LLAVA_NEXT_MISTRAL;
    assert.equal(parse(unlisted).tiling?.pinpoints.length, 5);
    const smallTiles = {
      ...unlisted,
      vision_config: { model_type: 'clip_vision_model', image_size: 320, patch_size: 16 },
    };
    assert.throws(
      () => parse(smallTiles),
      /config\.json lists none, and these are the family's defaults, which its 320-px image_size does not tile/,
    );
    assert.doesNotThrow(() => parse({ ...smallTiles, image_grid_pinpoints: [[320, 640]] }));
  });

  test('an error quotes a huge value cut short', () => {
    const strategy = 'x'.repeat(100_000);
    assert.throws(
      () => parse({ ...LLAVA_NEXT_MISTRAL, vision_feature_select_strategy: strategy }),
      (error: Error) => error.message.length < 1000 && /… \(100002 characters\)/.test(error.message),
    );
  });
});

describe('tiled features', () => {
  test("bilinear shrinking matches torch's interpolate(align_corners=False) worked by hand", () => {
    // 4 → 2 samples at 0.5 and 2.5; 3 → 2 at 0.25 and 1.75 (s = (i + ½) · in/out − ½).
    const row = Float32Array.of(1, 2, 4, 8);
    assert.deepEqual([...bilinearResize(row, { rows: 1, cols: 4 }, { rows: 1, cols: 2 }, 1)], [1.5, 6]);
    const column = Float32Array.of(0, 4, 8);
    assert.deepEqual([...bilinearResize(column, { rows: 3, cols: 1 }, { rows: 2, cols: 1 }, 1)], [1, 7]);
  });

  test('tiles become one grid cut to the image, each row closed by the row end', () => {
    // Two 2 × 2 tiles side by side for a 4:1 image: the full grid is 2 × 4, the image covers 1 row of it.
    const spec = { tileSize: 10, featuresPerSide: 2, pinpoints: [[10, 20]] as const, baseTokens: 4 };
    const layout = anyresLayout(spec, { width: 40, height: 10 });
    assert.deepEqual(layout.tiles, { rows: 1, cols: 2 });
    assert.deepEqual(layout.unpadded, { rows: 2, cols: 4, firstRow: 0, firstCol: 0 });
    // On a 4 × 4 grid the same image keeps rows 1–2: one row of features, centred, the odd remainder kept.
    const square = anyresLayout({ ...spec, pinpoints: [[20, 20]] }, { width: 40, height: 10 });
    assert.deepEqual(square.unpadded, { rows: 2, cols: 4, firstRow: 1, firstCol: 0 });
    // Feature value = pass · 10 + patch, width 1.
    const passes = [0, 1, 2].map((pass) => Float32Array.from({ length: 4 }, (_, patch) => pass * 10 + patch));
    const packed = packTiledFeatures(passes, layout, 2, Float32Array.of(-1));
    // Base 0..3, then row 0: tile 1 patches 0, 1, tile 2 patches 0, 1, end; row 1: patches 2, 3 of each, end.
    assert.deepEqual([...packed], [0, 1, 2, 3, 10, 11, 20, 21, -1, 12, 13, 22, 23, -1]);
  });

  test("a reduced tile's fused token is placed where it holds cells, but owns none of them", () => {
    const spec = { tileSize: 10, featuresPerSide: 2, pinpoints: [[10, 20]] as const, baseTokens: 4 };
    const layout = anyresLayout(spec, { width: 40, height: 10 });
    /** A pass of tokens whose own patches are `own` (−1: made by a reduction), patch p held by token `owner[p]`. */
    const pass = (own: number[], owner: number[]): TokenState => ({
      hidden: Float32Array.from(own, (_, t) => t),
      count: own.length,
      width: 1,
      sizes: new Float32Array(own.length).fill(1),
      positions: Int32Array.from(own, (_, t) => t),
      spans: [
        {
          start: 0,
          count: own.length,
          grid: { rows: 2, cols: 2 },
          patchOwner: Int32Array.from(owner),
          tokenPatch: Int32Array.from(own),
        },
      ],
    });
    const whole = pass([0, 1, 2, 3], [0, 1, 2, 3]);
    // Tile 1: EViT fused patches 0, 1, 2 into a new token (no patch of its own); patch 3 kept.
    const { state } = packTiles([whole, pass([-1, 3], [0, 0, 0, 1]), whole], layout, 2, Float32Array.of(-1));
    const [span] = state.spans;
    const fates = Array.from(span.patchOwner, (owner, patch) =>
      owner < 0 ? 'd' : span.tokenPatch[owner - span.start] === patch ? 'k' : 'm',
    ).join('');
    // Base image 0–3, then the 2 × 4 grid: tile 1 holds cells 0, 1, 4, 5, tile 2 cells 2, 3, 6, 7.
    assert.equal(fates, 'kkkk' + 'mmkk' + 'mkkk');
  });
});
