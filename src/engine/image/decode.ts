import { checkImageFile } from '../../common/imageFile';
import { decodeGif } from './gif';
import { decodeJpeg } from './jpeg';
import { decodePng } from './png';
import type { RgbImage } from './rgb-image';
import { decodeWebp } from './webp';

export type { RgbImage } from './rgb-image';
export { detectImageFormat, type ImageFormat } from '../../common/imageFile';

/**
 * Decodes an image file to 8-bit RGB like PIL's `Image.open(path).convert('RGB')`, which is what
 * transformers' image processors see: alpha dropped (not composited), grayscale replicated,
 * palettes expanded, GIF's first frame, EXIF orientation not applied.
 * The header is checked against FiCoCo's size limits first, so no decoder allocates for a hostile size.
 */
export async function decodeImage(bytes: Uint8Array, sourceName: string): Promise<RgbImage> {
  const { format } = checkImageFile(bytes, sourceName);
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
