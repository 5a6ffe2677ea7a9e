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

test('tiles: the image on a black canvas, the odd padding row at the bottom, cut row by row', () => {
  // An 8 × 3 image in an 8 × 8 pinpoint of 4-px tiles: scale 1 (no resize), 5 rows of padding: 2 above, 3 below.
  const config = parsePreprocessorConfig(
    {
      image_processor_type: 'LlavaOnevisionImageProcessor',
      size: { height: 4, width: 4 },
      do_rescale: false,
      do_normalize: false,
    },
    'preprocessor_config.json',
  );
  const spec = { tileSize: 4, featuresPerSide: 2, pinpoints: [[8, 8]] as const, baseTokens: 4 };
  const [width, height] = [8, 3];
  const rgb = new Uint8Array(width * height * 3);
  // Red: 10·row + column + 1, so every image pixel is non-zero and says where it came from; green and blue 200, 100.
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) rgb.set([10 * y + x + 1, 200, 100], (y * width + x) * 3);
  const { pixelValues, layout } = preprocessTiles({ width, height, rgb }, config, spec);
  assert.deepEqual(layout.padding, { top: 2, bottom: 3, left: 0, right: 0 });
  const pass = 3 * 4 * 4;
  assert.equal(pixelValues.length, 5 * pass, 'the base image and 2 × 2 tiles');
  // Tile t (row-major after the base image), red channel, as rows of 4.
  const red = (tile: number) =>
    Array.from({ length: 4 }, (_, y) =>
      Array.from(pixelValues.subarray((1 + tile) * pass + y * 4, (1 + tile) * pass + y * 4 + 4)),
    );
  const canvasRow = [0, 0, 0, 0];
  assert.deepEqual(red(0), [canvasRow, canvasRow, [1, 2, 3, 4], [11, 12, 13, 14]]);
  assert.deepEqual(red(1), [canvasRow, canvasRow, [5, 6, 7, 8], [15, 16, 17, 18]]);
  assert.deepEqual(red(2), [[21, 22, 23, 24], canvasRow, canvasRow, canvasRow]);
  assert.deepEqual(red(3), [[25, 26, 27, 28], canvasRow, canvasRow, canvasRow]);
  // The padding is black in every channel, not the mean colour.
  const blue = pixelValues.subarray(3 * pass + 2 * 16, 3 * pass + 3 * 16);
  assert.deepEqual(Array.from(blue), [100, 100, 100, 100, ...new Array<number>(12).fill(0)]);
});
