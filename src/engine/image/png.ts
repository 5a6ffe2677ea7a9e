import { inflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import { PNG_COLOR_TYPES, pngChunks, TRUNCATED, undecodable } from '../../common/imageFile';
import { reasonOf, rgbFromRgba, type RgbImage } from './rgb-image';

// IHDR, the first chunk, as fixed offsets in the file: width and height (32-bit big-endian), then single bytes.
const IHDR_WIDTH_OFFSET = 16;
const IHDR_HEIGHT_OFFSET = 20;
const IHDR_BIT_DEPTH_OFFSET = 24;
const IHDR_COLOR_TYPE_OFFSET = 25;
const IHDR_INTERLACE_OFFSET = 28;

/** Adam7's seven passes: the column and row each starts at, and its steps across and down. */
const ADAM7_PASSES = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

/**
 * Decodes a PNG to RGB like PIL's `Image.open(...).convert('RGB')`: palette expanded, grayscale
 * replicated, alpha and tRNS transparency dropped, 1/2/4-bit samples scaled to 0..255.
 * 16-bit samples keep their high byte, as PIL does for RGB/RGBA/LA. (For plain 16-bit grayscale
 * PIL 9.4 opens mode "I" and clips values above 255, washing the image out to white; we keep the
 * high byte there too, deliberately.)
 */
export function decodePng(bytes: Uint8Array, sourceName: string): RgbImage {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = view.getUint32(IHDR_WIDTH_OFFSET);
  const height = view.getUint32(IHDR_HEIGHT_OFFSET);
  const sixteenBit = bytes[IHDR_BIT_DEPTH_OFFSET] === 16;
  let png: PNG;
  try {
    // pngjs inflates an interlaced image's data with no limit (a 5 MB file inflated to 4 GB), so it is tried here
    // first, up to the size the header allows; pngjs then inflates no more than that.
    const interlacedBytes = bytes[IHDR_INTERLACE_OFFSET] === 1 ? interlacedDataBytes(bytes, width, height) : undefined;
    if (interlacedBytes !== undefined) inflateImageData(bytes, interlacedBytes);
    // skipRescale keeps 16-bit samples whole so we can take the high byte (pngjs would round).
    png = PNG.sync.read(withoutTransparency(bytes), { skipRescale: sixteenBit });
  } catch (error) {
    const reason = isTooLarge(error)
      ? `it holds more image data than its ${width} × ${height} pixels take, which no valid PNG does`
      : describePngError(reasonOf(error));
    throw undecodable(sourceName, 'png', reason);
  }
  // The size the limits were checked against is the first IHDR's; the pixels must be that size.
  if (png.width !== width || png.height !== height) {
    throw undecodable(
      sourceName,
      'png',
      `it decoded to ${png.width} × ${png.height}, not the ${width} × ${height} of its header`,
    );
  }
  const samples: ArrayLike<number> = sixteenBit ? highBytes(png.data as unknown as Uint16Array) : png.data;
  return rgbFromRgba(samples, png.width, png.height);
}

/**
 * The file without its tRNS chunks, which only make pixels transparent: alpha is dropped here, and pngjs blackens the
 * pixels a grayscale or RGB tRNS names, where PIL keeps their colour.
 */
function withoutTransparency(bytes: Uint8Array): Buffer {
  const kept: Uint8Array[] = [];
  let keptFrom = 0;
  for (const chunk of pngChunks(bytes)) {
    if (chunk.type !== 'tRNS') continue;
    kept.push(bytes.subarray(keptFrom, chunk.start));
    keptFrom = chunk.end;
  }
  if (kept.length === 0) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  kept.push(bytes.subarray(keptFrom));
  return Buffer.concat(kept);
}

/**
 * The bytes an interlaced image's data inflates to: each pass's rows, each a filter byte then its packed samples.
 * Undefined for a colour type and bit depth PNG does not pair (the header check refuses them).
 */
function interlacedDataBytes(bytes: Uint8Array, width: number, height: number): number | undefined {
  const colorType = PNG_COLOR_TYPES[bytes[IHDR_COLOR_TYPE_OFFSET]];
  const depth = bytes[IHDR_BIT_DEPTH_OFFSET];
  if (!colorType?.bitDepths.includes(depth)) return undefined;
  const bitsPerPixel = colorType.samples * depth;
  let total = 0;
  for (const [left, top, across, down] of ADAM7_PASSES) {
    const passWidth = Math.ceil((width - left) / across);
    const passHeight = Math.ceil((height - top) / down);
    if (passWidth > 0 && passHeight > 0) total += passHeight * (1 + Math.ceil((passWidth * bitsPerPixel) / 8));
  }
  return total;
}

/** Inflates the IDAT chunks' data together, throwing Node's ERR_BUFFER_TOO_LARGE past `maxBytes`. */
function inflateImageData(bytes: Uint8Array, maxBytes: number): void {
  const data: Uint8Array[] = [];
  for (const chunk of pngChunks(bytes)) if (chunk.type === 'IDAT') data.push(chunk.data);
  inflateSync(Buffer.concat(data), { maxOutputLength: maxBytes });
}

function isTooLarge(error: unknown): boolean {
  return error instanceof RangeError && 'code' in error && error.code === 'ERR_BUFFER_TOO_LARGE';
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
