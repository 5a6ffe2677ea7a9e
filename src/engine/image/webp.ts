import { reasonOf, rgbFromRgba, TRUNCATED, undecodable, type RgbImage } from './rgb-image';

const RIFF_HEADER_BYTES = 8;

/**
 * Decodes a still WebP (lossy or lossless) with libwebp (WebAssembly), as PIL does, so pixels
 * match PIL's exactly. Alpha is dropped; animated WebP is not supported by this decoder.
 */
export async function decodeWebp(bytes: Uint8Array, sourceName: string): Promise<RgbImage> {
  if (bytes.length < riffLength(bytes)) throw undecodable(sourceName, 'WebP', TRUNCATED);
  // Loaded on first use: the module compiles its wasm when imported.
  const { decode } = await import('@cwasm/webp');
  try {
    const decoded = decode(bytes);
    return rgbFromRgba(decoded.data, decoded.width, decoded.height);
  } catch (error) {
    const reason = isAnimated(bytes) ? 'animated WebP is not supported' : `libwebp rejected the data (${reasonOf(error)})`;
    throw undecodable(sourceName, 'WebP', reason);
  }
}

/** Total file length the RIFF header promises. */
function riffLength(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return RIFF_HEADER_BYTES + view.getUint32(4, true);
}

/** VP8X header with the animation flag set. */
function isAnimated(bytes: Uint8Array): boolean {
  const chunk = String.fromCharCode(...bytes.subarray(12, 16));
  return chunk === 'VP8X' && (bytes[20] & 0x02) !== 0;
}
