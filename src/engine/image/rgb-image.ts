/** A decoded image as the preprocessors consume it. */
export interface RgbImage {
  width: number;
  height: number;
  /** 3 bytes per pixel, row-major */
  rgb: Uint8Array;
}

/** Drops the alpha channel without compositing, as PIL's `convert('RGB')` does. */
export function rgbFromRgba(rgba: ArrayLike<number>, width: number, height: number): RgbImage {
  const pixelCount = width * height;
  const rgb = new Uint8Array(pixelCount * 3);
  for (let pixel = 0; pixel < pixelCount; pixel++) {
    rgb[pixel * 3] = rgba[pixel * 4];
    rgb[pixel * 3 + 1] = rgba[pixel * 4 + 1];
    rgb[pixel * 3 + 2] = rgba[pixel * 4 + 2];
  }
  return { width, height, rgb };
}

/** The reason text of an unknown thrown value, for wrapping library errors. */
export function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
