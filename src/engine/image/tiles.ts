/**
 * AnyRes pixel values (LLaVA-NeXT, LLaVA-OneVision), equal to transformers' slow image processors on PIL: the whole
 * image squashed to the preprocessor's `size` (the base image, one tile after the per-image steps), then the image
 * resized into its best pinpoint keeping its aspect, padded black around it and cut into tiles row by row; each of
 * those then goes through the per-image steps.
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
  const side = spec.tileSize;
  const base = baseSize(config, side);
  checkTilingBudget(image, layout, base.width);
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
  const tiles = [resizeLikePillow(source, base.width, base.height, config.resample)];
  for (let row = 0; row < layout.tiles.rows; row++)
    for (let col = 0; col < layout.tiles.cols; col++) tiles.push(crop(canvas, row * side, col * side, side));
  const passSize = 3 * side * side;
  const pixelValues = new Float32Array(tiles.length * passSize);
  // The per-image steps leave a tile as it is in size (checked at load: checkMakesTowerInput).
  tiles.forEach((tile, pass) => pixelValues.set(preprocessImage(tile, config).pixelValues, pass * passSize));
  return { pixelValues, layout };
}

/**
 * What get_image_patches resizes the whole image to: the preprocessor's `size` (a square of its shortest_edge, or height
 * × width), which the per-image steps then make one tile (resize, centre crop) as they do the tiles. Without a resize,
 * one tile. Where `size` is the tile, as in every released checkpoint, this is the tile.
 */
function baseSize(config: ImagePreprocessorConfig, side: number): { width: number; height: number } {
  const target = config.resize;
  if (!target) return { width: side, height: side };
  return 'shortestEdge' in target
    ? { width: target.shortestEdge, height: target.shortestEdge }
    : { width: target.width, height: target.height };
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
function checkTilingBudget(image: RgbImage, layout: AnyresLayout, baseWidth: number): void {
  // Pillow resizes rows first: the horizontal pass keeps the image's rows at the new width.
  checkStepsWithinBudget(image, [
    { name: 'after the horizontal pass of resizing', width: layout.resized.width, height: image.height },
    { name: 'after padding to its tiles', width: layout.best.width, height: layout.best.height },
    { name: 'after the horizontal pass of the base image', width: baseWidth, height: image.height },
  ]);
}
