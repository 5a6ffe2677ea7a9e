/**
 * AnyRes pixel values (LLaVA-NeXT, LLaVA-OneVision), equal to transformers' slow image processors on PIL: the whole
 * image squashed to one tile (the base image), then the image resized into its best pinpoint keeping its aspect,
 * padded black around it and cut into tiles row by row; each of those then goes through the per-image steps.
 */
import { type AnyresLayout, type AnyresSpec, anyresLayout } from '../../common/anyres';
import { drawPadded, unpadded } from './padded-image';
import { type ImagePreprocessorConfig, checkStepsWithinBudget, preprocessImage } from './preprocess';
import { resizeLikePillow } from './resample';
import type { RgbImage } from './rgb-image';

export interface TilePixels {
  /** [passes, 3, tile, tile] float32: the base image first, then the tiles in row-major order */
  pixelValues: Float32Array;
  layout: AnyresLayout;
}

export function preprocessTiles(image: RgbImage, config: ImagePreprocessorConfig, spec: AnyresSpec): TilePixels {
  const layout = anyresLayout(spec, image);
  checkTilingBudget(image, layout, spec.tileSize);
  const side = spec.tileSize;
  const source = unpadded(image);
  const resized = resizeLikePillow(source, layout.resized.width, layout.resized.height, config.resample);
  // The black canvas of the best resolution with the resized image on it: what `_pad_for_patching` makes.
  const canvas = drawPadded({
    image: resized,
    width: layout.best.width,
    height: layout.best.height,
    left: layout.padding.left,
    top: layout.padding.top,
    color: [0, 0, 0],
  });
  const tiles = [resizeLikePillow(source, side, side, config.resample)];
  for (let row = 0; row < layout.tiles.rows; row++)
    for (let col = 0; col < layout.tiles.cols; col++) tiles.push(crop(canvas, row * side, col * side, side));
  const passSize = 3 * side * side;
  const pixelValues = new Float32Array(tiles.length * passSize);
  // The per-image steps leave a tile as it is in size (checked at load: checkMakesTowerInput).
  tiles.forEach((tile, pass) => pixelValues.set(preprocessImage(tile, config).pixelValues, pass * passSize));
  return { pixelValues, layout };
}

/** The side × side square at (top, left) of an image that contains it. */
function crop(image: RgbImage, top: number, left: number, side: number): RgbImage {
  const rgb = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    const from = ((top + y) * image.width + left) * 3;
    rgb.set(image.rgb.subarray(from, from + side * 3), y * side * 3);
  }
  return { width: side, height: side, rgb };
}

/** Refuses, before anything is allocated, a tiling whose largest intermediate image exceeds the budget. */
function checkTilingBudget(image: RgbImage, layout: AnyresLayout, side: number): void {
  // Pillow resizes rows first: the horizontal pass keeps the image's rows at the new width.
  checkStepsWithinBudget(image, [
    { name: 'after the horizontal pass of resizing', width: layout.resized.width, height: image.height },
    { name: 'after padding to its tiles', width: layout.best.width, height: layout.best.height },
    { name: 'after the horizontal pass of the base image', width: side, height: image.height },
  ]);
}
