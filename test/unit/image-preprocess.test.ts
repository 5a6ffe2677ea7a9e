import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import { decodeImage } from '../../src/engine/image/decode';
import { parsePreprocessorConfig, preprocessImage, seenRegion } from '../../src/engine/image/preprocess';

const FIXTURES = 'test/fixtures/preprocess';
const manifest = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8')) as {
  configs: Record<string, unknown>;
  preprocess: { image: string; config: string; values: string; shape: [number, number, number] }[];
};

function read(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(FIXTURES, name)));
}

for (const { image, config, values, shape } of manifest.preprocess) {
  test(`preprocesses ${image} with ${config} like transformers on PIL`, async () => {
    const decoded = await decodeImage(read(image), image);
    const result = preprocessImage(decoded, parsePreprocessorConfig(manifest.configs[config], `${config}.json`));
    assert.deepEqual([result.channels, result.height, result.width], shape);
    const bytes = read(values);
    const expected = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    let maxDiff = 0;
    for (let i = 0; i < expected.length; i++)
      maxDiff = Math.max(maxDiff, Math.abs(result.pixelValues[i] - expected[i]));
    assert.ok(maxDiff <= 1e-6, `max abs diff ${maxDiff}`);
  });
}

function assertConfigError(json: unknown, message: RegExp): void {
  assert.throws(
    () => parsePreprocessorConfig(json, 'preprocessor_config.json'),
    (error: unknown) => error instanceof FicocoError && error.kind === 'config' && message.test(error.message),
  );
}

test('config errors name the file and the field', () => {
  assertConfigError([], /^preprocessor_config\.json must hold a JSON object$/);
  assertConfigError({ resample: 1 }, /field "resample" is 1; supported: 0 \(nearest\), 2 \(bilinear\), 3 \(bicubic\)/);
  assertConfigError({ size: { shortest_edge: -3 } }, /field "size\.shortest_edge" must be a positive integer, got -3/);
  assertConfigError({ size: { height: 336 } }, /field "size\.width" must be a positive integer/);
  assertConfigError({ size: 336, image_mean: [0.5, 0.5] }, /field "image_mean" must be a list of 3 numbers/);
  assertConfigError({ size: 336, do_pad: 'yes' }, /field "do_pad" must be true or false/);
  assertConfigError(
    { size: 336, image_processor_type: 'Qwen2VLImageProcessor' },
    /field "image_processor_type" is "Qwen2VLImageProcessor"/,
  );
});

test('bare-int sizes follow CLIP: size is the shortest edge, crop_size a square', () => {
  const config = parsePreprocessorConfig({ size: 336, crop_size: 336 }, 'preprocessor_config.json');
  assert.deepEqual(config.resize, { shortestEdge: 336 });
  assert.deepEqual(config.centerCrop, { height: 336, width: 336 });
  assert.deepEqual(config.padColor, [122, 116, 104]);
});

test('the part of the image the model sees: the middle of a centre crop, a padded square around it, all of a squash', () => {
  const config = (fields: Record<string, unknown>) =>
    parsePreprocessorConfig({ do_normalize: false, do_rescale: false, resample: 0, ...fields }, 'p.json');
  const cropped = config({ size: { shortest_edge: 50 }, crop_size: { height: 50, width: 50 } });
  // 200 × 100 resized to 100 × 50; the crop starts 25 pixels in: 50 source pixels, a quarter of the width.
  assert.deepEqual(seenRegion(200, 100, cropped), { left: 0.25, top: 0, width: 0.5, height: 1 });
  // The pixels agree: each output column shows the source column the region says (red holds x / 2 here).
  const columns = { width: 200, height: 100, rgb: new Uint8Array(200 * 100 * 3) };
  for (let i = 0; i < 200 * 100; i++) columns.rgb[i * 3] = (i % 200) >> 1;
  const red = preprocessImage(columns, cropped).pixelValues;
  for (const x of [0, 25, 49]) {
    const sourceX = seenRegion(200, 100, cropped).left * 200 + (x / 50) * 100;
    assert.ok(Math.abs(red[x] * 2 - sourceX) <= 2, `column ${x}: red ${red[x]}, region says x ≈ ${sourceX}`);
  }
  const padded = config({ do_pad: true, size: { shortest_edge: 40 }, crop_size: { height: 40, width: 40 } });
  assert.deepEqual(seenRegion(200, 100, padded), { left: 0, top: -0.5, width: 1, height: 2 });
  assert.deepEqual(seenRegion(99, 200, padded), { left: -50 / 99, top: 0, width: 200 / 99, height: 1 });
  const squashed = config({ size: { height: 40, width: 40 }, do_center_crop: false });
  assert.deepEqual(seenRegion(200, 100, squashed), { left: 0, top: 0, width: 1, height: 1 });
});
