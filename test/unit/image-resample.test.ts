import assert from 'node:assert/strict';
import { test } from 'node:test';
import { drawPadded, paddedToSquare, unpadded, type PaddedImage, type Rgb } from '../../src/engine/image/padded-image';
import { resizeLikePillow, type ResampleFilter } from '../../src/engine/image/resample';
import type { RgbImage } from '../../src/engine/image/rgb-image';

/** mulberry32: a small seeded generator, so a failing case can be replayed. */
function randomSource(seed: number): (below: number) => number {
  let state = seed;
  return (below) => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % below;
  };
}

function randomImage(random: (below: number) => number, width: number, height: number): RgbImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = random(256);
  return { width, height, rgb };
}

function randomCanvas(random: (below: number) => number, image: RgbImage, color: Rgb): PaddedImage {
  const width = image.width + random(30);
  const height = image.height + random(30);
  return { image, width, height, left: random(width - image.width + 1), top: random(height - image.height + 1), color };
}

const FILTERS: ResampleFilter[] = ['nearest', 'bilinear', 'bicubic'];

test('resizing a padded image in place equals resizing its drawn canvas, byte for byte', () => {
  const random = randomSource(1);
  for (let trial = 0; trial < 300; trial++) {
    const image = randomImage(random, 1 + random(40), 1 + random(40));
    const color = [random(256), random(256), random(256)] as const;
    // Squares as LLaVA pads them, and arbitrary canvases with the image anywhere on them.
    const padded = trial % 2 === 0 ? paddedToSquare(image, color) : randomCanvas(random, image, color);
    // Targets include the canvas's own width or height, where Pillow skips that pass.
    const width = random(4) === 0 ? padded.width : 1 + random(60);
    const height = random(4) === 0 ? padded.height : 1 + random(60);
    const filter = FILTERS[trial % 3];
    const inPlace = resizeLikePillow(padded, width, height, filter);
    const drawn = resizeLikePillow(unpadded(drawPadded(padded)), width, height, filter);
    const placement = `${image.width}×${image.height} at (${padded.left}, ${padded.top}) on ${padded.width}×${padded.height}`;
    const where = `trial ${trial}: ${placement} → ${width}×${height} ${filter}`;
    assert.deepEqual([inPlace.width, inPlace.height], [width, height], where);
    assert.ok(Buffer.from(inPlace.rgb).equals(Buffer.from(drawn.rgb)), where);
  }
});

test('a padded canvas is drawn with the image centred, rounded down, as expand2square does', () => {
  const image = { width: 3, height: 1, rgb: Uint8Array.from([1, 1, 1, 2, 2, 2, 3, 3, 3]) };
  const drawn = drawPadded(paddedToSquare(image, [9, 8, 7]));
  assert.deepEqual([drawn.width, drawn.height], [3, 3]);
  const canvasRow = [9, 8, 7, 9, 8, 7, 9, 8, 7];
  assert.deepEqual([...drawn.rgb], [...canvasRow, ...image.rgb, ...canvasRow]);
});
