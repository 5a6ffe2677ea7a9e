import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import { decodeImage } from '../../src/engine/image/decode';
import { parsePreprocessorConfig, preprocessImage } from '../../src/engine/image/preprocess';

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
