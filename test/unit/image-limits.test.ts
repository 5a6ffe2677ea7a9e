import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import zlib, { crc32, deflateSync } from 'node:zlib';
import { FicocoError } from '../../src/common/errors';
import {
  checkImageFile,
  MAX_IMAGE_ASPECT_RATIO,
  MAX_IMAGE_PIXELS,
  MAX_JPEG_SCANS,
  readImageHeader,
} from '../../src/common/imageFile';
import { decodeImage } from '../../src/engine/image/decode';
import { decodePng } from '../../src/engine/image/png';
import { exifOrientation, uprightSize } from '../../src/engine/image/orientation';
import { checkPreprocessingBudget, parsePreprocessorConfig, preprocessImage } from '../../src/engine/image/preprocess';

const FIXTURES = 'test/fixtures/preprocess';
const manifest = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8')) as {
  decode: { image: string; rgb: string; width: number; height: number }[];
};

function read(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(FIXTURES, name)));
}

function bytes(...parts: (number[] | Uint8Array | string)[]): Uint8Array {
  const arrays = parts.map((part) =>
    typeof part === 'string' ? new TextEncoder().encode(part) : Uint8Array.from(part),
  );
  const joined = new Uint8Array(arrays.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of arrays) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

const uint16le = (value: number) => [value & 0xff, value >> 8];
const uint16be = (value: number) => [value >> 8, value & 0xff];
const uint24le = (value: number) => [value & 0xff, (value >> 8) & 0xff, value >> 16];
const uint32le = (value: number) => [value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff, value >>> 24];
const uint32be = (value: number) => [value >>> 24, (value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff];

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const typeAndData = bytes(type, data);
  return bytes(uint32be(data.length), typeAndData, uint32be(crc32(typeAndData)));
}

/** An IHDR chunk, 8-bit RGB unless told otherwise. */
function ihdr(width: number, height: number, { depth = 8, colorType = 2, interlace = 0 } = {}): Uint8Array {
  return pngChunk('IHDR', bytes(uint32be(width), uint32be(height), [depth, colorType, 0, 0, interlace]));
}

/** The signature, the chunks, IEND. */
function pngOf(...chunks: Uint8Array[]): Uint8Array {
  return bytes([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], ...chunks, pngChunk('IEND', new Uint8Array()));
}

/** An IDAT chunk of `length` zero bytes, deflated: black pixels, each row's filter byte 0 (none). */
const zeroImageData = (length: number) => pngChunk('IDAT', deflateSync(new Uint8Array(length)));

/** An 8-bit RGB PNG; with `withPixels`, a complete file of black pixels (deflate shrinks them to almost nothing). */
function png(width: number, height: number, withPixels: boolean): Uint8Array {
  return pngOf(ihdr(width, height), ...(withPixels ? [zeroImageData(height * (1 + width * 3))] : []));
}

/** An image block: a descriptor at 0, 0 (no local colour table), the LZW code size, data for one pixel of index 0. */
function gifFrame([width, height]: [number, number], codeSize = 2): number[] {
  return [0x2c, 0, 0, 0, 0, ...uint16le(width), ...uint16le(height), 0, codeSize, 2, 0x44, 0x01, 0];
}

/** A GIF with a 2-colour palette (black, white), then `blocks`, then the trailer. */
function gifOf(screen: [number, number], ...blocks: number[][]): Uint8Array {
  const logicalScreen = [...uint16le(screen[0]), ...uint16le(screen[1]), 0x80, 0, 0];
  return bytes('GIF89a', logicalScreen, [0, 0, 0, 255, 255, 255], ...blocks, [0x3b]);
}

/** A GIF with one frame whose 2-bit LZW data is a clear code, one pixel, end. */
const gif = (screen: [number, number], frame: [number, number]) => gifOf(screen, gifFrame(frame));

/**
 * An 8 × 8 baseline JPEG of mid-gray with `components` (1 gray, 3 YCbCr, 4 CMYK): one quantization table, Huffman
 * tables of one symbol each, every block coded as DC difference 0 then end of block (2 bits); `scans` repeats the scan.
 */
function tinyJpeg(components: number, scans = 1): Uint8Array {
  const ids = Array.from({ length: components }, (_, i) => i + 1);
  const segment = (marker: number, payload: number[]) => [0xff, marker, ...uint16be(payload.length + 2), ...payload];
  const huffmanTable = (classAndId: number) => segment(0xc4, [classAndId, 1, ...new Array<number>(15).fill(0), 0]);
  const frame = segment(0xc0, [8, ...uint16be(8), ...uint16be(8), components, ...ids.flatMap((id) => [id, 0x11, 0])]);
  // The scan's bits, padded with ones to a byte.
  const scan = [...segment(0xda, [components, ...ids.flatMap((id) => [id, 0]), 0, 63, 0]), 0xff >> (2 * components)];
  return bytes(
    [0xff, 0xd8],
    segment(0xdb, [0, ...new Array<number>(64).fill(1)]),
    frame,
    huffmanTable(0x00),
    huffmanTable(0x10),
    ...new Array<number[]>(scans).fill(scan),
    [0xff, 0xd9],
  );
}

function riff(chunk: string, payload: number[]): Uint8Array {
  return bytes('RIFF', uint32le(4 + 8 + payload.length), 'WEBP', chunk, uint32le(payload.length), payload);
}

const webpLossless = (width: number, height: number) =>
  riff('VP8L', [0x2f, ...uint32le((width - 1) | ((height - 1) << 14)), ...new Array<number>(9).fill(0)]);
const webpExtended = (width: number, height: number) =>
  riff('VP8X', [0, 0, 0, 0, ...uint24le(width - 1), ...uint24le(height - 1), 0, 0, 0, 0]);
const webpLossy = (width: number, height: number) =>
  riff('VP8 ', [0, 0, 0, 0x9d, 0x01, 0x2a, ...uint16le(width), ...uint16le(height)]);

/** The byte offset of a JPEG marker's segment in baseline.jpg (just after its 0xFF code). */
function markerOffset(jpeg: Uint8Array, code: number): number {
  for (let i = 0; i < jpeg.length - 1; i++) if (jpeg[i] === 0xff && jpeg[i + 1] === code) return i + 2;
  throw new Error(`no marker ${code.toString(16)}`);
}

/** baseline.jpg, its frame header claiming another size (the scan data stays the 64 × 48 one). */
function jpegClaiming(width: number, height: number): Uint8Array {
  const jpeg = read('baseline.jpg').slice();
  const frameHeader = markerOffset(jpeg, 0xc0);
  jpeg.set([...uint16be(height), ...uint16be(width)], frameHeader + 3);
  return jpeg;
}

async function assertRefused(file: Uint8Array, name: string, messages: RegExp[]): Promise<void> {
  await assert.rejects(decodeImage(file, name), (error: unknown) => {
    assert.ok(error instanceof FicocoError, `not a FicocoError: ${String(error)}`);
    assert.equal(error.kind, 'image');
    for (const message of messages) assert.match(error.message, message);
    return true;
  });
}

/** Refused by the header check, which the extension and the server run before anything is decoded. */
function assertHeaderRefused(file: Uint8Array, name: string, message: RegExp): void {
  assert.throws(
    () => checkImageFile(file, name),
    (error: unknown) => error instanceof FicocoError && error.kind === 'image' && message.test(error.message),
    message.source,
  );
}

const PIXEL_LIMIT = new RegExp(`up to ${MAX_IMAGE_PIXELS / 1e6} megapixels`);
const ASPECT_LIMIT = new RegExp(`up to ${MAX_IMAGE_ASPECT_RATIO}:1`);

test("reads every fixture's size from its header alone (as stored: EXIF orientation turns some upright later)", async () => {
  for (const { image, width, height } of manifest.decode) {
    const bytes = read(image);
    const header = readImageHeader(bytes, image);
    const upright = uprightSize(header, await exifOrientation(bytes, header.format));
    assert.deepEqual([upright.width, upright.height], [width, height], image);
  }
  assert.deepEqual(readImageHeader(webpExtended(300, 200), 'x.webp'), { format: 'webp', width: 300, height: 200 });
  assert.deepEqual(readImageHeader(webpLossy(640, 480), 'x.webp'), { format: 'webp', width: 640, height: 480 });
  assert.deepEqual(readImageHeader(gif([10, 10], [40, 30]), 'x.gif'), {
    format: 'gif',
    width: 10,
    height: 10,
    largestFrame: { width: 40, height: 30 },
  });
});

test('a PNG whose header claims 30000 × 30000 is refused before decoding', async () => {
  await assertRefused(png(30000, 30000, false), 'huge.png', [
    /^huge\.png is 30000 × 30000 pixels \(900 megapixels\)/,
    PIXEL_LIMIT,
  ]);
});

test('a 35-byte GIF claiming a 65535 × 65535 screen is refused', async () => {
  const file = gif([65535, 65535], [1, 1]);
  assert.equal(file.length, 35);
  await assertRefused(file, 'bomb.gif', [/^bomb\.gif is 65535 × 65535 pixels \(4295 megapixels\)/, PIXEL_LIMIT]);
});

test("a GIF frame larger than its screen is refused by the frame's size", async () => {
  const frameSize = /^frame\.gif has a frame that is 20000 × 20000 pixels \(400 megapixels\)/;
  await assertRefused(gif([1, 1], [20000, 20000]), 'frame.gif', [frameSize, PIXEL_LIMIT]);
});

test('gifuct sees only the blocks the header check read, up to the first frame', async () => {
  // gifuct reads a graphic control extension as 8 fixed bytes; the GIF standard reads sub-blocks, here an empty one.
  // So the header check stops at the trailer after it, where gifuct, given the whole file, went on to the frame behind.
  const file = gifOf([1, 1], [0x21, 0xf9, 0x00, 0x3b, 0, 0, 0, 0], gifFrame([20000, 20000]));
  assert.equal(readImageHeader(file, 'hidden.gif').largestFrame, undefined);
  await assertRefused(file, 'hidden.gif', [/^hidden\.gif could not be decoded as GIF: the file holds no image frame$/]);
});

test("a GIF's first frame decodes with its graphic control extension, whatever frames follow", async () => {
  // Transparent index 1 (white) fills the screen around the 1 × 1 frame, as PIL does.
  const control = [0x21, 0xf9, 4, 0x01, 0, 0, 1, 0];
  const later = new Array<number[]>(1000).fill([...control, ...gifFrame([1, 1])]);
  const decoded = await decodeImage(gifOf([2, 1], control, gifFrame([1, 1]), ...later), 'anim.gif');
  assert.deepEqual([...decoded.rgb], [0, 0, 0, 255, 255, 255]);
});

test('a GIF whose LZW code size is outside 2 to 8 is refused by the header check', () => {
  // gifuct-js fills tables of 2^size entries: a 29-byte file of size 24 took 717 MB, of size 28 the whole heap.
  for (const codeSize of [0, 1, 9, 12, 24]) {
    const message = new RegExp(`^lzw\\.gif could not be decoded as GIF: a frame's LZW code size is ${codeSize}, where`);
    assertHeaderRefused(gifOf([1, 1], gifFrame([1, 1], codeSize)), 'lzw.gif', message);
  }
  // In any frame, not only the first.
  const late = gifOf([1, 1], gifFrame([1, 1]), gifFrame([1, 1], 24));
  assertHeaderRefused(late, 'late.gif', /^late\.gif could not be decoded as GIF: a frame's LZW code size is 24/);
  for (const codeSize of [2, 8]) checkImageFile(gifOf([1, 1], gifFrame([1, 1], codeSize)), 'fine.gif');
});

test('34-byte WebPs claiming 16383 × 16383 are refused, lossless and extended', async () => {
  for (const [variant, file] of [
    ['VP8L', webpLossless(16383, 16383)],
    ['VP8X', webpExtended(16383, 16383)],
  ] as const) {
    assert.ok(file.length <= 34, `${variant} is ${file.length} bytes`);
    await assertRefused(file, 'bomb.webp', [/^bomb\.webp is 16383 × 16383 pixels \(269 megapixels\)/, PIXEL_LIMIT]);
  }
});

test('a complete 45000 × 1 PNG is refused for its aspect ratio', async () => {
  const file = png(45000, 1, true);
  assert.ok(file.length < 400, `${file.length} bytes`);
  await assertRefused(file, 'strip.png', [/^strip\.png is 45000 × 1 pixels, an aspect ratio of 45000:1/, ASPECT_LIMIT]);
});

test('an image just over a limit is said to be over it, its figure rounded up', () => {
  // 50,008,000 pixels and 32.01:1 rounded to the nearest read "50 megapixels" and "32:1", the limits themselves.
  assertHeaderRefused(
    png(8000, 6251, false),
    'big.png',
    /\(50\.1 megapixels\); FiCoCo takes images up to 50 megapixels/,
  );
  assertHeaderRefused(
    png(3201, 100, false),
    'strip.png',
    /an aspect ratio of 32\.1:1; FiCoCo takes aspect ratios up to 32:1/,
  );
});

test('a full-page web screenshot (1280 × 20000) passes the limits', () => {
  assert.deepEqual(checkImageFile(png(1280, 20000, false), 'page.png'), { format: 'png', width: 1280, height: 20000 });
});

test('an image with no pixels one way is refused', async () => {
  await assertRefused(png(0, 10, false), 'empty.png', [
    /^empty\.png is 0 × 10 pixels: an image needs at least one pixel each way/,
  ]);
});

test('a JPEG claiming 60000 × 60000 is refused, and valid JPEGs still decode exactly after it', async () => {
  const hostile = jpegClaiming(60000, 60000);
  // Three tries used to leave @cwasm/jpeg-turbo's shared instance unable to decode anything.
  for (let attempt = 0; attempt < 3; attempt++) {
    await assertRefused(hostile, 'huge.jpg', [/^huge\.jpg is 60000 × 60000 pixels \(3600 megapixels\)/, PIXEL_LIMIT]);
  }
  const decoded = await decodeImage(read('baseline.jpg'), 'baseline.jpg');
  assert.deepEqual(decoded.rgb, read('baseline.jpg.rgb'));
});

test('failures inside libjpeg-turbo leave the next decode exact', async () => {
  const baseline = read('baseline.jpg');
  const scan = markerOffset(baseline, 0xda);
  const garbledScan = baseline.slice();
  garbledScan.fill(0xff, scan + 20, scan + 60);
  // 7000 × 7000 (under the pixel limit) and a Huffman table that was never defined: libjpeg-turbo gives up after the
  // 196 MB output buffer is allocated; a reused instance leaked it every time, until its 32-bit heap ran out.
  const undefinedTable = jpegClaiming(7000, 7000);
  undefinedTable[scan + 4] = 0x33;
  const failures = [
    garbledScan,
    baseline.subarray(0, baseline.length >> 1),
    ...new Array<Uint8Array>(12).fill(undefinedTable),
  ];
  for (const corrupt of failures)
    await assertRefused(corrupt, 'corrupt.jpg', [/^corrupt\.jpg could not be decoded as JPEG: /]);
  const decoded = await decodeImage(baseline, 'baseline.jpg');
  assert.deepEqual(decoded.rgb, read('baseline.jpg.rgb'));
});

test("truncated and garbled headers are refused as the format's decoding error", async () => {
  const cases: [Uint8Array, string, RegExp][] = [
    [png(64, 48, true).subarray(0, 20), 'cut.png', /^cut\.png could not be decoded as PNG: data ends early/],
    [
      bytes(png(64, 48, true).subarray(0, 12), 'IDAT', new Uint8Array(20)),
      'odd.png',
      /^odd\.png could not be decoded as PNG: the header is garbled \(the first chunk is "IDAT", not IHDR\)/,
    ],
    [read('baseline.jpg').subarray(0, 100), 'cut.jpg', /^cut\.jpg could not be decoded as JPEG: data ends early/],
    [jpegClaiming(64, 0), 'dnl.jpg', /^dnl\.jpg could not be decoded as JPEG: .*height to a later DNL marker/],
    [
      bytes([0xff, 0xd8, 0xff, 0xda, 0, 2]),
      'noframe.jpg',
      /^noframe\.jpg could not be decoded as JPEG: .*no frame header \(SOF\) before the/,
    ],
    [gif([64, 48], [64, 48]).subarray(0, 15), 'cut.gif', /^cut\.gif could not be decoded as GIF: data ends early/],
    [webpExtended(64, 48).subarray(0, 26), 'cut.webp', /^cut\.webp could not be decoded as WebP: data ends early/],
    [riff('ALPH', [0, 0, 0, 0]), 'odd.webp', /^odd\.webp could not be decoded as WebP: .*the first chunk is "ALPH"/],
  ];
  for (const [file, name, message] of cases) await assertRefused(file, name, [message]);
});

test('a PNG with a second IHDR is refused: pngjs takes the last, a size the limits never saw', () => {
  const twice = pngOf(ihdr(1, 1), ihdr(8000, 8000));
  assertHeaderRefused(
    twice,
    'twice.png',
    /^twice\.png could not be decoded as PNG: the header is garbled \(a second IHDR/,
  );
  // Decoded without the header check, the pixels must still be the size it would have checked.
  const decodable = pngOf(ihdr(1, 1), ihdr(2, 1), zeroImageData(1 + 2 * 3));
  assert.throws(
    () => decodePng(decodable, 'twice.png'),
    /^FicocoError: twice\.png could not be decoded as PNG: it decoded to 2 × 1, not the 1 × 1 of its header$/,
  );
});

test('a PNG whose colour type and bit depth the PNG specification does not pair is refused by the header check', () => {
  // Table 11.1 of the specification, which PIL follows; pngjs decoded any pairing.
  const allowed: Record<number, number[]> = {
    0: [1, 2, 4, 8, 16],
    2: [8, 16],
    3: [1, 2, 4, 8],
    4: [8, 16],
    6: [8, 16],
  };
  for (const colorType of [0, 1, 2, 3, 4, 5, 6, 7]) {
    for (const depth of [0, 1, 2, 3, 4, 8, 16, 32]) {
      const file = pngOf(ihdr(1, 1, { depth, colorType }));
      if (allowed[colorType]?.includes(depth)) {
        checkImageFile(file, 'fine.png');
        continue;
      }
      assertHeaderRefused(file, 'odd.png', /^odd\.png could not be decoded as PNG: the header is garbled \(/);
    }
  }
  assertHeaderRefused(
    pngOf(ihdr(1, 1, { depth: 4, colorType: 2 })),
    'rgb4.png',
    /^rgb4\.png could not be decoded as PNG: the header is garbled \(RGB at bit depth 4, where PNG allows 8 or 16\)$/,
  );
  assertHeaderRefused(
    pngOf(ihdr(1, 1, { colorType: 5 })),
    'five.png',
    /^five\.png could not be decoded as PNG: the header is garbled \(colour type 5, which PNG does not define\)$/,
  );
});

test("a PNG's tRNS chunk leaves every pixel's colour as stored, as PIL's convert('RGB') does", async () => {
  // pngjs blackened the pixels a grayscale or RGB tRNS names transparent, and refused a tRNS that PIL reads.
  const palette = pngChunk('PLTE', bytes([10, 20, 30, 40, 50, 60]));
  const cases: [string, Uint8Array[], number[], number[]][] = [
    // Name; IHDR, PLTE and tRNS; one row of two pixels, the second the transparent one; their RGB (PIL 9.4's).
    [
      'gray8',
      [ihdr(2, 1, { colorType: 0 }), pngChunk('tRNS', bytes([0, 0x40]))],
      [0x80, 0x40],
      [128, 128, 128, 64, 64, 64],
    ],
    // 16-bit samples keep their high byte (see decodePng).
    [
      'gray16',
      [ihdr(2, 1, { depth: 16, colorType: 0 }), pngChunk('tRNS', bytes([0x40, 0]))],
      [0x80, 0x80, 0x40, 0],
      [128, 128, 128, 64, 64, 64],
    ],
    [
      'rgb8',
      [ihdr(2, 1), pngChunk('tRNS', bytes([0, 0x40, 0, 0x30, 0, 0x20]))],
      [0x80, 0x70, 0x60, 0x40, 0x30, 0x20],
      [128, 112, 96, 64, 48, 32],
    ],
    [
      'rgb16',
      [ihdr(2, 1, { depth: 16 }), pngChunk('tRNS', bytes([0x40, 0, 0x30, 0, 0x20, 0]))],
      [0x80, 0x80, 0x70, 0x70, 0x60, 0x60, 0x40, 0, 0x30, 0, 0x20, 0],
      [128, 112, 96, 64, 48, 32],
    ],
    [
      'palette with more alphas than colours',
      [ihdr(2, 1, { colorType: 3 }), palette, pngChunk('tRNS', bytes([0, 0, 0]))],
      [0, 1],
      [10, 20, 30, 40, 50, 60],
    ],
    [
      'palette with its alphas first',
      [ihdr(2, 1, { colorType: 3 }), pngChunk('tRNS', bytes([0])), palette],
      [0, 1],
      [10, 20, 30, 40, 50, 60],
    ],
  ];
  for (const [name, chunks, row, rgb] of cases) {
    const decoded = await decodeImage(pngOf(...chunks, pngChunk('IDAT', deflateSync(bytes([0], row)))), name);
    assert.deepEqual([...decoded.rgb], rgb, name);
  }
});

test('an interlaced PNG whose data inflates past its size is refused before pngjs inflates it all', async () => {
  // 3 × 5 1-bit gray in Adam7's seven passes: 11 rows of 1 byte each after their filter byte, 20 bytes.
  const header = ihdr(3, 5, { depth: 1, colorType: 0, interlace: 1 });
  const decoded = await decodeImage(pngOf(header, zeroImageData(20)), 'exact.png');
  assert.deepEqual([decoded.width, decoded.height], [3, 5]);
  // pngjs inflated an interlaced image's data with no limit: a 5 MB file took 17 s and 4.3 GB.
  for (const length of [21, 1 << 20]) {
    await assertRefused(pngOf(header, zeroImageData(length)), 'bomb.png', [
      /^bomb\.png could not be decoded as PNG: it holds more image data than its 3 × 5 pixels take, which no valid PNG/,
    ]);
  }
});

test("a PNG's EXIF orientation is read from its eXIf chunk, inflating nothing", async (t) => {
  const inflate = t.mock.method(zlib, 'inflateSync');
  // exifr, given the whole file, inflated the iCCP colour profile too: 520 KB of it took 512 MB.
  const stored = read('orientation-6.png');
  const afterHeader = 8 + 25;
  const profile = pngChunk('iCCP', bytes('icc', [0, 0], deflateSync(new Uint8Array(1000))));
  const file = bytes(stored.subarray(0, afterHeader), profile, stored.subarray(afterHeader));
  assert.equal(await exifOrientation(file, 'png'), 6);
  assert.equal(inflate.mock.callCount(), 0);
});

test('a CMYK JPEG is refused as such by the header check', async () => {
  for (const components of [1, 3]) {
    const decoded = await decodeImage(tinyJpeg(components), 'tiny.jpg');
    assert.deepEqual([...decoded.rgb.subarray(0, 3)], [128, 128, 128]);
  }
  // libjpeg-turbo converts four components only to CMYK, and said no more than that it rejected the data.
  const message = /^print\.jpg is a CMYK JPEG, which FiCoCo does not read; save it as RGB \(sRGB\) and try again\.$/;
  assertHeaderRefused(tinyJpeg(4), 'print.jpg', message);
});

test(`a JPEG in more than ${MAX_JPEG_SCANS} scans is refused by the header check`, () => {
  checkImageFile(tinyJpeg(1, MAX_JPEG_SCANS), 'scans.jpg');
  // libjpeg-turbo decodes each scan over the whole image: 3,000 of them in a 155 KB file took 90 s.
  const message = new RegExp(`^scans\\.jpg is a JPEG in more than ${MAX_JPEG_SCANS} scans`);
  assertHeaderRefused(tinyJpeg(1, MAX_JPEG_SCANS + 1), 'scans.jpg', message);
  // The bytes of a scan marker inside a segment (an EXIF thumbnail has its own) are no scan.
  const file = tinyJpeg(1);
  const app1 = [0xff, 0xe1, ...uint16be(2 + 2 * 200), ...new Array<number[]>(200).fill([0xff, 0xda]).flat()];
  checkImageFile(bytes(file.subarray(0, 2), app1, file.subarray(2)), 'thumbnail.jpg');
});

const LLAVA_336 = {
  image_processor_type: 'LlavaImageProcessor',
  do_pad: true,
  size: { shortest_edge: 336 },
  crop_size: 336,
};

test('preprocessor_config.json sizes are bounded per side, naming the field', () => {
  const cases: [unknown, RegExp][] = [
    [{ size: 100000 }, /field "size" is 100000 pixels; FiCoCo takes at most 4096/],
    [{ size: { shortest_edge: 5000 } }, /field "size\.shortest_edge" is 5000 pixels/],
    [{ size: { height: 336, width: 4097 } }, /field "size\.width" is 4097 pixels/],
    [{ size: 336, crop_size: 9999 }, /field "crop_size" is 9999 pixels/],
    [{ size: 336, crop_size: { height: 5000, width: 336 } }, /field "crop_size\.height" is 5000 pixels/],
    // Out of float32's range, these turned every pixel into ±∞ or NaN and every answer into nothing.
    [{ size: 336, image_std: [1e-300, 1, 1] }, /field "image_std" must be numbers float32 holds/],
    [{ size: 336, image_mean: [1e39, 0.5, 0.5] }, /field "image_mean" must be numbers float32 holds/],
    [{ size: 336, rescale_factor: 1e300 }, /field "rescale_factor" must be a positive number that float32 holds/],
  ];
  for (const [json, message] of cases) {
    assert.throws(
      () => parsePreprocessorConfig(json, 'preprocessor_config.json'),
      (error: unknown) => error instanceof FicocoError && error.kind === 'config' && message.test(error.message),
      message.source,
    );
  }
  assert.deepEqual(parsePreprocessorConfig({ size: { height: 4096, width: 4096 } }, 'p.json').resize, {
    height: 4096,
    width: 4096,
  });
});

test('preprocessing refuses a step over its working budget, naming the size and the step', () => {
  const assertOverBudget = (width: number, height: number, json: unknown, message: RegExp) =>
    assert.throws(
      () => checkPreprocessingBudget(width, height, parsePreprocessorConfig(json, 'p.json')),
      (error: unknown) =>
        error instanceof FicocoError &&
        error.kind === 'image' &&
        message.test(error.message) &&
        /within 100 megapixels/.test(error.message),
      message.source,
    );
  const padOnly = { do_pad: true, do_resize: false, do_center_crop: false };
  assertOverBudget(
    12000,
    375,
    padOnly,
    /^A 12000 × 375 image would be 12000 × 12000 pixels \(144 megapixels\) after padding to a square/,
  );
  assertOverBudget(
    1250,
    40000,
    { size: { shortest_edge: 4096 } },
    /^A 1250 × 40000 image would be 4096 × 40000 pixels .* horizontal pass/,
  );
  assertOverBudget(
    40000,
    1250,
    { size: { shortest_edge: 4096 }, resample: 0 },
    /would be 131072 × 4096 pixels .* after resizing/,
  );
  // Padding is read in place by the resize: a 1:32 strip never becomes a 40000² square.
  checkPreprocessingBudget(40000, 1250, parsePreprocessorConfig(LLAVA_336, 'p.json'));
});

test('preprocessImage checks the budget before allocating', () => {
  const image = { width: 12000, height: 375, rgb: new Uint8Array(12000 * 375 * 3) };
  const padOnly = parsePreprocessorConfig({ do_pad: true, do_resize: false, do_center_crop: false }, 'p.json');
  assert.throws(
    () => preprocessImage(image, padOnly),
    (error: unknown) => error instanceof FicocoError && error.kind === 'image',
  );
});

test('a 1:32 strip pads to a square: canvas around it, the strip across the middle', () => {
  // Read in place, not drawn: the 12000² canvas would take 432 MB and its horizontal pass 12000 rows instead of 375.
  const image = { width: 12000, height: 375, rgb: new Uint8Array(12000 * 375 * 3).fill(255) };
  const config = parsePreprocessorConfig(LLAVA_336, 'p.json');
  const { pixelValues, height, width } = preprocessImage(image, config);
  assert.deepEqual([height, width], [336, 336]);
  const { mean, std } = config.normalize!;
  const canvasValue = (channel: number) => (config.padColor[channel] / 255 - mean[channel]) / std[channel];
  const whiteValue = (channel: number) => (1 - mean[channel]) / std[channel];
  for (let channel = 0; channel < 3; channel++) {
    const plane = pixelValues.subarray(channel * 336 * 336, (channel + 1) * 336 * 336);
    assert.ok(Math.abs(plane[0] - canvasValue(channel)) < 1e-5, 'the top-left corner is canvas');
    assert.ok(Math.abs(plane[168 * 336 + 168] - whiteValue(channel)) < 1e-5, 'the centre is the white strip');
  }
});

test('an image in a format FiCoCo does not read is named as such, not called "not an image"', () => {
  const bytes = (text: string) => new Uint8Array([...text].map((c) => c.charCodeAt(0)));
  const refused: [string, Uint8Array, RegExp][] = [
    ['scan.tiff', bytes('II*\0\x08\0\0\0'), /^scan\.tiff is a TIFF image, which FiCoCo cannot read: convert it to/],
    ['scan.tif', bytes('MM\0*\0\0\0\x08'), /^scan\.tif is a TIFF image/],
    ['IMG_0001.heic', bytes('\0\0\0\x18ftypheic\0\0\0\0mif1heic'), /^IMG_0001\.heic is a HEIC\/HEIF image/],
    ['photo.avif', bytes('\0\0\0\x1cftypavif\0\0\0\0avifmif1'), /^photo\.avif is an AVIF image/],
    ['old.bmp', bytes(`BM${'\0'.repeat(52)}`), /^old\.bmp is a BMP image/],
  ];
  for (const [name, data, message] of refused)
    assert.throws(
      () => readImageHeader(data, name),
      (error: unknown) =>
        error instanceof FicocoError && message.test(error.message) && /PNG, JPEG, WebP, GIF\.$/.test(error.message),
      name,
    );
  assert.throws(() => readImageHeader(bytes('These are notes.\n'), 'notes.png'), {
    message: 'notes.png is not an image: supported formats are PNG, JPEG, WebP, GIF.',
  });
});
