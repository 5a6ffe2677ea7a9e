import { type ImageFormat, checkImageFile } from '../../common/imageFile';
import { decodeGif } from './gif';
import { decodeJpeg } from './jpeg';
import { exifOrientation, uprightImage } from './orientation';
import { decodePng } from './png';
import type { RgbImage } from './rgb-image';
import { decodeWebp } from './webp';

export type { RgbImage } from './rgb-image';
export { detectImageFormat, type ImageFormat } from '../../common/imageFile';

/**
 * Decodes an image file to 8-bit RGB as transformers' `load_image` does (PIL's `Image.open`, `exif_transpose`,
 * `convert('RGB')`), which is what its image processors see: alpha dropped (not composited), grayscale replicated,
 * palettes expanded, GIF's first frame, a JPEG's, PNG's or WebP's EXIF orientation applied.
 * The header is checked against FiCoCo's size limits first, so no decoder allocates for a hostile size.
 */
export async function decodeImage(bytes: Uint8Array, sourceName: string): Promise<RgbImage> {
  const { format } = checkImageFile(bytes, sourceName);
  return uprightImage(await decodePixels(bytes, sourceName, format), await exifOrientation(bytes, format));
}

function decodePixels(bytes: Uint8Array, sourceName: string, format: ImageFormat): Promise<RgbImage> | RgbImage {
  switch (format) {
    case 'png':
      return decodePng(bytes, sourceName);
    case 'jpeg':
      return decodeJpeg(bytes, sourceName);
    case 'webp':
      return decodeWebp(bytes, sourceName);
    case 'gif':
      return decodeGif(bytes, sourceName);
  }
}
