import { FicocoError } from '../../common/errors';
import { decodeGif } from './gif';
import { decodeJpeg } from './jpeg';
import { decodePng } from './png';
import type { RgbImage } from './rgb-image';
import { decodeWebp } from './webp';

export type { RgbImage } from './rgb-image';
export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'gif';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG_SIGNATURE = [0xff, 0xd8, 0xff];
const GIF_SIGNATURE = [0x47, 0x49, 0x46, 0x38]; // "GIF8" (GIF87a and GIF89a)
const RIFF_SIGNATURE = [0x52, 0x49, 0x46, 0x46]; // "RIFF"
const WEBP_FORM_TYPE = [0x57, 0x45, 0x42, 0x50]; // "WEBP" at offset 8

/** The image format by magic bytes (file extensions are not trusted). */
export function detectImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (startsWith(bytes, PNG_SIGNATURE)) return 'png';
  if (startsWith(bytes, JPEG_SIGNATURE)) return 'jpeg';
  if (startsWith(bytes, GIF_SIGNATURE)) return 'gif';
  if (startsWith(bytes, RIFF_SIGNATURE) && startsWith(bytes, WEBP_FORM_TYPE, 8)) return 'webp';
  return undefined;
}

/**
 * Decodes an image file to 8-bit RGB like PIL's `Image.open(path).convert('RGB')`, which is what
 * transformers' image processors see: alpha dropped (not composited), grayscale replicated,
 * palettes expanded, GIF's first frame, EXIF orientation not applied.
 */
export async function decodeImage(bytes: Uint8Array, sourceName: string): Promise<RgbImage> {
  const format = detectImageFormat(bytes);
  switch (format) {
    case 'png':
      return decodePng(bytes, sourceName);
    case 'jpeg':
      return decodeJpeg(bytes, sourceName);
    case 'webp':
      return decodeWebp(bytes, sourceName);
    case 'gif':
      return decodeGif(bytes, sourceName);
    case undefined:
      throw new FicocoError(`${sourceName} is not an image: supported formats are PNG, JPEG, WebP, GIF`, 'image');
  }
}

function startsWith(bytes: Uint8Array, signature: number[], offset = 0): boolean {
  return bytes.length >= offset + signature.length && signature.every((byte, i) => bytes[offset + i] === byte);
}
