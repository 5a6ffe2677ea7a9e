import { TRUNCATED, undecodable } from '../../common/imageFile';
import { reasonOf, rgbFromRgba, type RgbImage } from './rgb-image';
import { WasmDecoderModule, type WasmDecoderInstance, type WasmHeapExports } from './wasm';

/** libwebp's one-call decoder as @cwasm/webp's build exports it: returns the RGBA pixels' pointer, or 0. */
interface LibwebpExports extends WasmHeapExports {
  WebPDecodeRGBA(webp: number, webpSize: number, width: number, height: number): number;
}

// libwebp because PIL uses it, so pixels match PIL's exactly.
const libwebp = new WasmDecoderModule<LibwebpExports>('@cwasm/webp', 'webp.wasm');
const RIFF_HEADER_BYTES = 8;

/**
 * Decodes a still WebP (lossy or lossless) with libwebp (WebAssembly), as PIL does, so pixels
 * match PIL's exactly. Alpha is dropped; animated WebP is not supported by this decoder.
 */
export async function decodeWebp(bytes: Uint8Array, sourceName: string): Promise<RgbImage> {
  if (bytes.length < riffLength(bytes)) throw undecodable(sourceName, 'webp', TRUNCATED);
  const webp = await libwebp.instantiate();
  try {
    return decodeRgba(webp, bytes);
  } catch (error) {
    const reason = isAnimated(bytes)
      ? 'animated WebP is not supported'
      : `libwebp rejected the data (${reasonOf(error)})`;
    throw undecodable(sourceName, 'webp', reason);
  }
}

/** In an instance used once, so nothing is freed. */
function decodeRgba(webp: WasmDecoderInstance<LibwebpExports>, bytes: Uint8Array): RgbImage {
  const input = webp.copyIn(bytes);
  const size = webp.allocate(8);
  const rgba = webp.exports.WebPDecodeRGBA(input, bytes.length, size, size + 4);
  if (rgba === 0) throw new Error('WebPDecodeRGBA returned no pixels');
  const width = webp.uint32At(size);
  const height = webp.uint32At(size + 4);
  return rgbFromRgba(webp.bytesAt(rgba, width * height * 4), width, height);
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
