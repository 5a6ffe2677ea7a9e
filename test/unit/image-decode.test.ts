import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import { decodeImage, detectImageFormat } from '../../src/engine/image/decode';

const FIXTURES = 'test/fixtures/preprocess';
const manifest = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8')) as {
  decode: { image: string; rgb: string; width: number; height: number }[];
};

function read(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(FIXTURES, name)));
}

for (const { image, rgb, width, height } of manifest.decode) {
  // libjpeg-turbo and libwebp (wasm) are the libraries PIL uses, so lossy formats match exactly too.
  test(`decodes ${image} to exactly PIL's RGB`, async () => {
    const decoded = await decodeImage(read(image), image);
    assert.equal(decoded.width, width);
    assert.equal(decoded.height, height);
    const expected = read(rgb);
    let maxDiff = 0;
    for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(decoded.rgb[i] - expected[i]));
    assert.equal(maxDiff, 0, `max abs diff ${maxDiff}`);
  });
}

test('an EXIF block that cannot be read leaves the pixels as stored, not the image undecoded', async () => {
  const jpeg = read('baseline.jpg');
  // An APP1 segment right after the start marker: "Exif\0\0", then a TIFF header that is not one.
  const payload = new Uint8Array([...new TextEncoder().encode('Exif\0\0'), 0x4a, 0x4a, 0x00, 0x2a, 0xff, 0xff]);
  const segment = new Uint8Array([0xff, 0xe1, 0, payload.length + 2, ...payload]);
  const garbled = new Uint8Array([...jpeg.subarray(0, 2), ...segment, ...jpeg.subarray(2)]);
  const [stored, decoded] = [await decodeImage(jpeg, 'baseline.jpg'), await decodeImage(garbled, 'garbled.jpg')];
  assert.deepEqual([decoded.width, decoded.height], [stored.width, stored.height]);
  assert.ok(Buffer.from(decoded.rgb).equals(Buffer.from(stored.rgb)));
});

test('detects formats by magic bytes, not by name', () => {
  assert.equal(detectImageFormat(read('rgb.png')), 'png');
  assert.equal(detectImageFormat(read('baseline.jpg')), 'jpeg');
  assert.equal(detectImageFormat(read('lossy.webp')), 'webp');
  assert.equal(detectImageFormat(read('animated.gif')), 'gif');
  assert.equal(detectImageFormat(read('notes.png')), undefined);
  assert.equal(detectImageFormat(new Uint8Array()), undefined);
});

async function assertImageError(bytes: Uint8Array, name: string, message: RegExp): Promise<void> {
  await assert.rejects(decodeImage(bytes, name), (error: unknown) => {
    assert.ok(error instanceof FicocoError);
    assert.equal(error.kind, 'image');
    assert.match(error.message, message);
    return true;
  });
}

test('a text file is not an image', async () => {
  await assertImageError(
    read('notes.png'),
    'notes.png',
    /^notes\.png is not an image: supported formats are PNG, JPEG, WebP, GIF\.$/,
  );
});

test('a truncated PNG says so', async () => {
  await assertImageError(
    read('truncated.png'),
    'shot.png',
    /^shot\.png could not be decoded as PNG: data ends early \(truncated file\?\)$/,
  );
});

test('a truncated JPEG says so', async () => {
  await assertImageError(
    read('truncated.jpg'),
    'photo.jpg',
    /^photo\.jpg could not be decoded as JPEG: data ends early/,
  );
});

test('a truncated WebP says so', async () => {
  const webp = read('lossy.webp');
  await assertImageError(
    webp.subarray(0, webp.length >> 1),
    'pic.webp',
    /^pic\.webp could not be decoded as WebP: data ends early/,
  );
});

test('a truncated GIF says so', async () => {
  const gif = read('animated.gif');
  await assertImageError(gif.subarray(0, 200), 'anim.gif', /^anim\.gif could not be decoded as GIF: /);
});

test('a corrupt JPEG names the file and format', async () => {
  const jpeg = read('baseline.jpg').slice();
  jpeg.fill(0x55, 20, 400);
  await assertImageError(jpeg, 'photo.jpg', /^photo\.jpg could not be decoded as JPEG: /);
});
