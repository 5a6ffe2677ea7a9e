import { PNG } from 'pngjs';
import { TRUNCATED, undecodable } from '../../common/imageFile';
import { reasonOf, rgbFromRgba, type RgbImage } from './rgb-image';

const IHDR_BIT_DEPTH_OFFSET = 24;

/**
 * Decodes a PNG to RGB like PIL's `Image.open(...).convert('RGB')`: palette expanded, grayscale
 * replicated, alpha dropped, 1/2/4-bit samples scaled to 0..255.
 * 16-bit samples keep their high byte, as PIL does for RGB/RGBA/LA. (For plain 16-bit grayscale
 * PIL 9.4 opens mode "I" and clips values above 255, washing the image out to white; we keep the
 * high byte there too, deliberately.)
 */
export function decodePng(bytes: Uint8Array, sourceName: string): RgbImage {
  const sixteenBit = bytes[IHDR_BIT_DEPTH_OFFSET] === 16;
  let png: PNG;
  try {
    // skipRescale keeps 16-bit samples whole so we can take the high byte (pngjs would round).
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { skipRescale: sixteenBit });
  } catch (error) {
    throw undecodable(sourceName, 'png', describePngError(reasonOf(error)));
  }
  const samples: ArrayLike<number> = sixteenBit ? highBytes(png.data as unknown as Uint16Array) : png.data;
  return rgbFromRgba(samples, png.width, png.height);
}

function highBytes(samples: Uint16Array): Uint8Array {
  const bytes = new Uint8Array(samples.length);
  for (let i = 0; i < samples.length; i++) bytes[i] = samples[i] >> 8;
  return bytes;
}

/** pngjs reports truncation as a stream-internal message; give the user a plain reason. */
function describePngError(message: string): string {
  if (/waitng on finished stream|waiting on finished stream|unexpected end/i.test(message)) return TRUNCATED;
  return message;
}

/** A mid-grey RGB PNG of `width` × `height` (the engine's warm-up image). */
export function blankPng(width: number, height: number): Uint8Array {
  const png = new PNG({ width, height, colorType: 2 });
  png.data.fill(128);
  return PNG.sync.write(png, { colorType: 2 });
}
