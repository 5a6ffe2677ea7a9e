import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePreprocessorConfig, preprocessImage } from '../../src/engine/image/preprocess';
import { preprocessTiles } from '../../src/engine/image/tiles';

/** A deterministic noisy image, so any resampling difference shows. */
function noise(width: number, height: number) {
  const rgb = new Uint8Array(width * height * 3);
  let state = 12345;
  for (let i = 0; i < rgb.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    rgb[i] = state >>> 24;
  }
  return { width, height, rgb };
}

/** A tiling processor's preprocessor_config.json with these fields, normalising to [-1, 1] with bicubic resizes. */
function tilingConfig(fields: Record<string, unknown>) {
  const json = { image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], resample: 3, ...fields };
  return parsePreprocessorConfig(json, 'preprocessor_config.json');
}

test("the base image is the whole image resized to the preprocessor's size, then centre-cropped to the tile", () => {
  // LlavaNextImageProcessor.get_image_patches resizes the whole image to (shortest_edge, shortest_edge); the per-image
  // steps then crop it to crop_size. A size larger than the tile makes the base image a centre crop of that square.
  const config = tilingConfig({
    image_processor_type: 'LlavaNextImageProcessor',
    size: { shortest_edge: 40 },
    crop_size: { height: 32, width: 32 },
  });
  const spec = { tileSize: 32, featuresPerSide: 2, pinpoints: [[32, 64]] as const, baseTokens: 4 };
  const image = noise(90, 50);
  const { pixelValues } = preprocessTiles(image, config, spec);
  const pass = 3 * 32 * 32;
  assert.equal(pixelValues.length, 3 * pass, 'the base image and two tiles');
  const expected = preprocessImage(image, { ...config, resize: { height: 40, width: 40 } }).pixelValues;
  assert.deepEqual(Array.from(pixelValues.subarray(0, pass)), Array.from(expected));
});

test('where size is the tile, as in released checkpoints, the base image is the whole image squashed to the tile', () => {
  const config = tilingConfig({
    image_processor_type: 'LlavaOnevisionImageProcessor',
    size: { height: 32, width: 32 },
  });
  const spec = { tileSize: 32, featuresPerSide: 2, pinpoints: [[64, 32]] as const, baseTokens: 4 };
  const image = noise(30, 70);
  const { pixelValues } = preprocessTiles(image, config, spec);
  const expected = preprocessImage(image, config).pixelValues;
  assert.deepEqual(Array.from(pixelValues.subarray(0, 3 * 32 * 32)), Array.from(expected));
});
