import { TRUNCATED, undecodable } from '../../common/imageFile';
import { reasonOf, type RgbImage } from './rgb-image';
import { WasmDecoderModule, type WasmDecoderInstance, type WasmHeapExports } from './wasm';

/** The TurboJPEG API calls that @cwasm/jpeg-turbo's build exports (pointers and sizes are 32-bit ints). */
interface TurboJpegExports extends WasmHeapExports {
  tjInitDecompress(): number;
  tjDecompressHeader3(
    handle: number,
    jpeg: number,
    jpegSize: number,
    width: number,
    height: number,
    subsampling: number,
    colorspace: number,
  ): number;
  tjDecompress2(
    handle: number,
    jpeg: number,
    jpegSize: number,
    output: number,
    width: number,
    pitch: number,
    height: number,
    pixelFormat: number,
    flags: number,
  ): number;
}

// libjpeg-turbo because PIL uses it: pixels match PIL's exactly (a pure-JS decoder such as jpeg-js would not).
const libjpegTurbo = new WasmDecoderModule<TurboJpegExports>('@cwasm/jpeg-turbo', 'jpeg-turbo.wasm');
const TJPF_RGB = 0;
// Default flags: accurate integer IDCT and fancy upsampling, as PIL decodes.
const TJ_DEFAULT_FLAGS = 0;

/**
 * Decodes a JPEG with libjpeg-turbo (WebAssembly), the library PIL uses, so pixels match PIL's
 * exactly (same IDCT and fancy upsampling). Grayscale is replicated; CMYK is not supported.
 */
export async function decodeJpeg(bytes: Uint8Array, sourceName: string): Promise<RgbImage> {
  const turboJpeg = await libjpegTurbo.instantiate();
  try {
    return decompress(turboJpeg, bytes);
  } catch (error) {
    // libjpeg-turbo's reasons are not exposed by the wasm build; a missing end marker is the common one.
    const reason = endsWithEndOfImage(bytes) ? `libjpeg-turbo rejected the data (${reasonOf(error)})` : TRUNCATED;
    throw undecodable(sourceName, 'jpeg', reason);
  }
}

/** TurboJPEG's header-then-pixels sequence, in an instance used once (so nothing is freed or destroyed). */
function decompress(turboJpeg: WasmDecoderInstance<TurboJpegExports>, bytes: Uint8Array): RgbImage {
  const { exports } = turboJpeg;
  const jpeg = turboJpeg.copyIn(bytes);
  const handle = exports.tjInitDecompress();
  if (handle === 0) throw new Error('it could not start a decompressor');
  const header = turboJpeg.allocate(16);
  if (exports.tjDecompressHeader3(handle, jpeg, bytes.length, header, header + 4, header + 8, header + 12) !== 0) {
    throw new Error('it refused the header');
  }
  const width = turboJpeg.uint32At(header);
  const height = turboJpeg.uint32At(header + 4);
  const output = turboJpeg.allocate(width * height * 3);
  if (
    exports.tjDecompress2(handle, jpeg, bytes.length, output, width, width * 3, height, TJPF_RGB, TJ_DEFAULT_FLAGS) !==
    0
  ) {
    throw new Error('it refused the image data');
  }
  return { width, height, rgb: turboJpeg.bytesAt(output, width * height * 3).slice() };
}

function endsWithEndOfImage(bytes: Uint8Array): boolean {
  // Some writers pad after the EOI marker, so look for it near the end rather than exactly at it.
  const tail = bytes.subarray(Math.max(0, bytes.length - 64));
  for (let i = tail.length - 2; i >= 0; i--) if (tail[i] === 0xff && tail[i + 1] === 0xd9) return true;
  return false;
}
