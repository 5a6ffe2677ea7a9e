import { reasonOf, rgbFromRgba, TRUNCATED, undecodable, type RgbImage } from './rgb-image';

/**
 * Decodes a JPEG with libjpeg-turbo (WebAssembly), the library PIL uses, so pixels match PIL's
 * exactly (same IDCT and fancy upsampling). Grayscale is replicated; CMYK is not supported.
 */
export async function decodeJpeg(bytes: Uint8Array, sourceName: string): Promise<RgbImage> {
  // Loaded on first use: the module compiles its wasm when imported.
  const { decode } = await import('@cwasm/jpeg-turbo');
  try {
    const decoded = decode(bytes);
    return rgbFromRgba(decoded.data, decoded.width, decoded.height);
  } catch (error) {
    // libjpeg-turbo's reasons are not exposed by the wasm build; a missing end marker is the common one.
    const reason = endsWithEndOfImage(bytes) ? `libjpeg-turbo rejected the data (${reasonOf(error)})` : TRUNCATED;
    throw undecodable(sourceName, 'JPEG', reason);
  }
}

function endsWithEndOfImage(bytes: Uint8Array): boolean {
  // Some writers pad after the EOI marker, so look for it near the end rather than exactly at it.
  const tail = bytes.subarray(Math.max(0, bytes.length - 64));
  for (let i = tail.length - 2; i >= 0; i--) if (tail[i] === 0xff && tail[i + 1] === 0xd9) return true;
  return false;
}
