import { orientation as readOrientation } from 'exifr';
import type { Size } from '../../common/anyres';
import { type ImageFormat, pngChunks } from '../../common/imageFile';
import type { RgbImage } from './rgb-image';

/** Where output pixel (x, y) comes from in a w × h source, for each EXIF Orientation other than 1 (upright). */
const SOURCE_OF: Record<number, (x: number, y: number, w: number, h: number) => [number, number]> = {
  2: (x, y, w) => [w - 1 - x, y], // mirrored left–right
  3: (x, y, w, h) => [w - 1 - x, h - 1 - y], // upside down
  4: (x, y, _w, h) => [x, h - 1 - y], // mirrored top–bottom
  5: (x, y) => [y, x], // transposed
  6: (x, y, _w, h) => [y, h - 1 - x], // turned a quarter clockwise to show upright
  7: (x, y, w, h) => [w - 1 - y, h - 1 - x], // transversed
  8: (x, y, w) => [w - 1 - y, x], // turned a quarter counter-clockwise to show upright
};

/** The EXIF Orientation of a JPEG, PNG or WebP, 1 where it has none or it cannot be read (the pixels still decode). */
export async function exifOrientation(bytes: Uint8Array, format: ImageFormat): Promise<number> {
  const metadata =
    format === 'jpeg' ? bytes : format === 'png' ? pngExif(bytes) : format === 'webp' ? webpExif(bytes) : undefined;
  if (!metadata) return 1;
  const value = await readOrientation(metadata).catch(() => undefined);
  return value !== undefined && Object.hasOwn(SOURCE_OF, value) ? value : 1;
}

/** A WebP's EXIF chunk, a TIFF block that exifr reads alone (it does not walk WebP's RIFF chunks itself). */
function webpExif(bytes: Uint8Array): Uint8Array | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // "RIFF", size, "WEBP", then chunks: a four-letter name, a 32-bit little-endian size, the payload padded to even.
  for (let at = 12; at + 8 <= bytes.length;) {
    const size = view.getUint32(at + 4, true);
    if (String.fromCharCode(...bytes.subarray(at, at + 4)) === 'EXIF') {
      return tiffBlock(bytes.subarray(at + 8, at + 8 + size));
    }
    at += 8 + size + (size % 2);
  }
  return undefined;
}

/**
 * A PNG's eXIf chunk, a TIFF block. Given the whole file, exifr would also inflate the iCCP colour profile, which a
 * 520 KB file blows up to 512 MB.
 */
function pngExif(bytes: Uint8Array): Uint8Array | undefined {
  for (const chunk of pngChunks(bytes)) if (chunk.type === 'eXIf') return tiffBlock(chunk.data);
  return undefined;
}

/** An EXIF payload as a TIFF block: some writers keep JPEG's "Exif\0\0" prefix. */
function tiffBlock(payload: Uint8Array): Uint8Array {
  return String.fromCharCode(...payload.subarray(0, 4)) === 'Exif' ? payload.subarray(6) : payload;
}

/** The size an image of `stored` size shows at once turned upright: orientations 5 to 8 turn it sideways. */
export function uprightSize(stored: Size, orientation: number): Size {
  return orientation >= 5 && Object.hasOwn(SOURCE_OF, orientation)
    ? { width: stored.height, height: stored.width }
    : { width: stored.width, height: stored.height };
}

/**
 * The image turned upright as its EXIF Orientation says, as viewers, browsers and transformers' `load_image`
 * (PIL's `ImageOps.exif_transpose`) show it: a photo taken in portrait is read in portrait, and the overlay drawn
 * over the chat's picture of it lines up.
 */
export function uprightImage(image: RgbImage, orientation: number): RgbImage {
  const sourceOf = SOURCE_OF[orientation];
  if (!sourceOf) return image;
  const { width: w, height: h } = image;
  const { width, height } = uprightSize(image, orientation);
  const rgb = new Uint8Array(image.rgb.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [sx, sy] = sourceOf(x, y, w, h);
      const from = (sy * w + sx) * 3;
      const to = (y * width + x) * 3;
      for (let channel = 0; channel < 3; channel++) rgb[to + channel] = image.rgb[from + channel];
    }
  }
  return { width, height, rgb };
}
