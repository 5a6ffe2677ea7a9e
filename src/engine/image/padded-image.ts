import type { RgbImage } from './rgb-image';

export type Rgb = readonly [number, number, number];

/**
 * An image placed on a canvas of one colour, never drawn unless asked: resizing reads the canvas as if it
 * were there, so LLaVA's pad-to-square of a 45000 × 1 strip costs nothing like 45000² pixels.
 */
export interface PaddedImage {
  image: RgbImage;
  /** The canvas */
  width: number;
  height: number;
  /** Where the image's top-left pixel sits on the canvas. */
  left: number;
  top: number;
  color: Rgb;
}

/** The image on a canvas of its own size: no padding. */
export function unpadded(image: RgbImage): PaddedImage {
  return { image, width: image.width, height: image.height, left: 0, top: 0, color: [0, 0, 0] };
}

/** LLaVA's expand2square: the image centred (rounded down) on a square of `color`. */
export function paddedToSquare(image: RgbImage, color: Rgb): PaddedImage {
  const side = Math.max(image.width, image.height);
  return { image, width: side, height: side, left: (side - image.width) >> 1, top: (side - image.height) >> 1, color };
}

/** The canvas as pixels; the image itself (not a copy) when there is no padding. */
export function drawPadded(padded: PaddedImage): RgbImage {
  const { image, width, height, left, top, color } = padded;
  if (width === image.width && height === image.height) return image;
  const rgb = new Uint8Array(width * height * 3);
  // Fill one row pixel by pixel, then copy it down: far fewer calls than per-pixel fills.
  for (let x = 0; x < width; x++) rgb.set(color, x * 3);
  for (let y = 1; y < height; y++) rgb.copyWithin(y * width * 3, 0, width * 3);
  const rowBytes = image.width * 3;
  for (let y = 0; y < image.height; y++) {
    rgb.set(image.rgb.subarray(y * rowBytes, (y + 1) * rowBytes), ((top + y) * width + left) * 3);
  }
  return { width, height, rgb };
}
