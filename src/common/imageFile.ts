import { FicocoError } from './errors';

/** The image formats FiCoCo reads, as `detectImageFormat` names them. */
export const IMAGE_FORMATS = ['png', 'jpeg', 'webp', 'gif'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];
/** The MIME type of each format, for data: URLs and the browser's File types. */
export const IMAGE_MIME_TYPES: Record<ImageFormat, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
};
/** File name extensions of those formats, for file pickers and menus (the bytes decide the format). */
export const IMAGE_FILE_EXTENSIONS = ['png', 'jpg', 'jpeg', 'webp', 'gif'] as const;

/** The format a file name's extension suggests, before its bytes are read; undefined for other files. */
export function imageFormatOfFileName(name: string): ImageFormat | undefined {
  const extension = name.slice(name.lastIndexOf('.') + 1).toLowerCase();
  if (!(IMAGE_FILE_EXTENSIONS as readonly string[]).includes(extension)) return undefined;
  return extension === 'jpg' ? 'jpeg' : (extension as ImageFormat);
}

/** The largest image file accepted: a lossless 8K screenshot is 10–30 MB. */
export const MAX_IMAGE_BYTES = 32 * 1024 * 1024;

const FORMAT_NAMES: Record<ImageFormat, string> = { png: 'PNG', jpeg: 'JPEG', webp: 'WebP', gif: 'GIF' };

/** The largest image accepted, in pixels: an 8K screen is 33 megapixels, and decoding 50 already takes ~0.5 GB. */
export const MAX_IMAGE_PIXELS = 50_000_000;

/**
 * The longest side over the shortest, at most: full-page web screenshots (1280 × 20000 is 1:15.6, a phone's
 * 1080 × 30000 1:28) pass; past 1:32 a 336-pixel model sees the short side as 10 pixels (padded) or 1/32 of it
 * (cropped).
 */
export const MAX_IMAGE_ASPECT_RATIO = 32;

/** Images one question may carry: the chat, the CLI's callers and the server refuse more. */
export const MAX_IMAGES_PER_QUESTION = 8;

/** What an image file's header says, read without decoding it. */
export interface ImageHeader {
  format: ImageFormat;
  /** The decoded image's size (a GIF's logical screen). */
  width: number;
  height: number;
  /** GIFs only: the frame with the most pixels; decoders allocate each frame whole, and one may exceed the screen. */
  largestFrame?: { width: number; height: number };
}

/** The message part shared by all decoders when the data stops before the image does. */
export const TRUNCATED = 'data ends early (truncated file?)';

/** The error every format decoder and header reader throws: names the file, the format and what went wrong. */
export function undecodable(sourceName: string, format: ImageFormat, reason: string): FicocoError {
  return new FicocoError(`${sourceName} could not be decoded as ${FORMAT_NAMES[format]}: ${reason}`, 'image');
}

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

/** Image formats FiCoCo does not read, by magic bytes, named for the error that refuses them. */
function otherImageFormat(bytes: Uint8Array): string | undefined {
  const ascii = (start: number, end: number) => String.fromCharCode(...bytes.subarray(start, end));
  if (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*') return 'TIFF';
  if (ascii(0, 2) === 'BM' && bytes.length >= 26) return 'BMP';
  // ISO base media files: a box size, then "ftyp" and the major brand.
  if (ascii(4, 8) === 'ftyp') {
    const brand = ascii(8, 12);
    if (brand === 'avif' || brand === 'avis') return 'AVIF';
    if (['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1'].includes(brand)) return 'HEIC/HEIF';
  }
  return undefined;
}

/** The format and size from the file's header, without decoding the pixels. */
export function readImageHeader(bytes: Uint8Array, sourceName: string): ImageHeader {
  const format = detectImageFormat(bytes);
  if (format === undefined) {
    const supported = IMAGE_FORMATS.map((name) => FORMAT_NAMES[name]).join(', ');
    const other = otherImageFormat(bytes);
    // A phone's HEIC or a scanner's TIFF is an image: saying it is not would leave its owner puzzled.
    if (other)
      throw new FicocoError(
        `${sourceName} is ${/^[AEIOU]/.test(other) ? 'an' : 'a'} ${other} image, which FiCoCo cannot read: ` +
          `convert it to one of ${supported}.`,
        'image',
      );
    throw new FicocoError(`${sourceName} is not an image: supported formats are ${supported}.`, 'image');
  }
  const header = new HeaderBytes(bytes, sourceName, format);
  switch (format) {
    case 'png':
      return { format, ...readPngSize(header) };
    case 'jpeg':
      return { format, ...readJpegSize(header) };
    case 'webp':
      return { format, ...readWebpSize(header) };
    case 'gif':
      return { format, ...readGifSizes(header) };
  }
}

/** Why a file of `bytes` bytes is refused, by its size alone (read, or as its file system reports it). */
export function imageFileTooLarge(sourceName: string, bytes: number): string {
  return `${sourceName} is ${formatMebibytes(bytes)} MiB; FiCoCo takes image files up to ${formatMebibytes(MAX_IMAGE_BYTES)} MiB.`;
}

/** The header, refused before any decoding when the file or the image is too big, or too elongated, for FiCoCo. */
export function checkImageFile(bytes: Uint8Array, sourceName: string): ImageHeader {
  if (bytes.length > MAX_IMAGE_BYTES) throw new FicocoError(imageFileTooLarge(sourceName, bytes.length), 'image');
  const header = readImageHeader(bytes, sourceName);
  const { width, height } = header;
  if (width === 0 || height === 0) {
    throw new FicocoError(
      `${sourceName} is ${width} × ${height} pixels: an image needs at least one pixel each way.`,
      'image',
    );
  }
  checkPixelCount(width, height, sourceName);
  if (header.largestFrame) checkFrameSize(header.largestFrame.width, header.largestFrame.height, sourceName);
  const [longSide, shortSide] = [Math.max(width, height), Math.min(width, height)];
  if (longSide / shortSide > MAX_IMAGE_ASPECT_RATIO) {
    throw new FicocoError(
      `${sourceName} is ${width} × ${height} pixels, an aspect ratio of ${roundedUp(longSide, shortSide)}:1; ` +
        `FiCoCo takes aspect ratios up to ${MAX_IMAGE_ASPECT_RATIO}:1. Crop it into shorter parts and try again.`,
      'image',
    );
  }
  return header;
}

/** Refuses a GIF frame over MAX_IMAGE_PIXELS: decoders allocate a frame whole, whatever the screen's size. */
export function checkFrameSize(width: number, height: number, sourceName: string): void {
  checkPixelCount(width, height, `${sourceName} has a frame that`);
}

/** Refuses more than MAX_IMAGE_PIXELS; `subject` starts the message. */
function checkPixelCount(width: number, height: number, subject: string): void {
  const pixels = width * height;
  if (pixels <= MAX_IMAGE_PIXELS) return;
  throw new FicocoError(
    `${subject} is ${width} × ${height} pixels (${formatMegapixels(pixels)} megapixels); ` +
      `FiCoCo takes images up to ${formatMegapixels(MAX_IMAGE_PIXELS)} megapixels. Scale it down and try again.`,
    'image',
  );
}

/** Mebibytes, as messages print them. */
function formatMebibytes(bytes: number): string {
  return roundedUp(bytes, 1024 * 1024);
}

/** Megapixels, as messages print them. */
export function formatMegapixels(pixels: number): string {
  return roundedUp(pixels, 1e6);
}

/**
 * `numerator / denominator` rounded up, whole from 100 up and to one decimal below: a figure over a limit never reads
 * as the limit (32 MiB and a byte: 32.1 MiB, not 32 MiB).
 */
function roundedUp(numerator: number, denominator: number): string {
  // One division of whole numbers, so that an exact quotient is not nudged up by a rounding error.
  const tenths = Math.ceil((numerator * 10) / denominator);
  return tenths >= 1000 ? String(Math.ceil(numerator / denominator)) : String(tenths / 10);
}

function startsWith(bytes: Uint8Array, signature: number[], offset = 0): boolean {
  return bytes.length >= offset + signature.length && signature.every((byte, i) => bytes[offset + i] === byte);
}

/** Bounds-checked big- and little-endian reads that fail as the format's decoder would. */
class HeaderBytes {
  private readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    readonly sourceName: string,
    private readonly format: ImageFormat,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.length;
  }

  /** Throws TRUNCATED unless `count` bytes are there from `offset`. */
  need(offset: number, count: number): void {
    if (offset + count > this.bytes.length) throw undecodable(this.sourceName, this.format, TRUNCATED);
  }

  garbled(problem: string): FicocoError {
    return undecodable(this.sourceName, this.format, `the header is garbled (${problem})`);
  }

  byte(offset: number): number {
    this.need(offset, 1);
    return this.bytes[offset];
  }

  uint16be(offset: number): number {
    this.need(offset, 2);
    return this.view.getUint16(offset);
  }

  uint32be(offset: number): number {
    this.need(offset, 4);
    return this.view.getUint32(offset);
  }

  uint16le(offset: number): number {
    this.need(offset, 2);
    return this.view.getUint16(offset, true);
  }

  uint24le(offset: number): number {
    return this.uint16le(offset) | (this.byte(offset + 2) << 16);
  }

  uint32le(offset: number): number {
    this.need(offset, 4);
    return this.view.getUint32(offset, true);
  }

  ascii(offset: number, count: number): string {
    this.need(offset, count);
    return String.fromCharCode(...this.bytes.subarray(offset, offset + count));
  }
}

interface Size {
  width: number;
  height: number;
}

/** A PNG colour type: what it is called, its samples per pixel, the bit depths the specification allows it. */
interface PngColorType {
  name: string;
  samples: number;
  bitDepths: readonly number[];
}

/** The colour types PNG defines, by number (the specification's table 11.1). */
export const PNG_COLOR_TYPES: Partial<Record<number, PngColorType>> = {
  0: { name: 'grayscale', samples: 1, bitDepths: [1, 2, 4, 8, 16] },
  2: { name: 'RGB', samples: 3, bitDepths: [8, 16] },
  3: { name: 'palette', samples: 1, bitDepths: [1, 2, 4, 8] },
  4: { name: 'grayscale with alpha', samples: 2, bitDepths: [8, 16] },
  6: { name: 'RGBA', samples: 4, bitDepths: [8, 16] },
};

/**
 * The IHDR chunk, which the PNG specification puts first: width and height as 32-bit big-endian, then the bit depth
 * and the colour type as single bytes, refused where PNG does not pair them.
 */
function readPngSize(header: HeaderBytes): Size {
  const firstChunk = header.ascii(12, 4);
  if (firstChunk !== 'IHDR') throw header.garbled(`the first chunk is "${firstChunk}", not IHDR`);
  // pngjs decodes any pairing (RGB at bit depth 4 as 4-bit samples); PIL, which FiCoCo matches, refuses these.
  const colorTypeNumber = header.byte(25);
  const colorType = PNG_COLOR_TYPES[colorTypeNumber];
  if (!colorType) throw header.garbled(`colour type ${colorTypeNumber}, which PNG does not define`);
  const depth = header.byte(24);
  if (!colorType.bitDepths.includes(depth)) {
    const allowed = new Intl.ListFormat('en', { type: 'disjunction' }).format(colorType.bitDepths.map(String));
    throw header.garbled(`${colorType.name} at bit depth ${depth}, where PNG allows ${allowed}`);
  }
  // pngjs takes the size from the last IHDR, so a second one would pass a size these checks never saw.
  let headerChunks = 0;
  for (const { type } of pngChunks(header.bytes)) {
    if (type === 'IHDR' && ++headerChunks > 1) throw header.garbled('a second IHDR chunk');
  }
  return { width: header.uint32be(16), height: header.uint32be(20) };
}

/** A PNG chunk: its four-letter type, its data, and where it starts (its length field) and ends in the file. */
export interface PngChunk {
  type: string;
  data: Uint8Array;
  start: number;
  end: number;
}

/**
 * A PNG's chunks in file order up to IEND, where pngjs stops reading. The walk stops before a chunk that the file
 * ends inside (the decoder reports it as cut off), so every chunk it yields lies whole in the file.
 */
export function* pngChunks(bytes: Uint8Array): Generator<PngChunk> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Each chunk: its data's length (32-bit big-endian), its type, its data, a CRC (4 bytes).
  for (let offset = PNG_SIGNATURE.length; offset + 12 <= bytes.length;) {
    const end = offset + 12 + view.getUint32(offset);
    if (end > bytes.length) return;
    const type = String.fromCharCode(bytes[offset + 4], bytes[offset + 5], bytes[offset + 6], bytes[offset + 7]);
    yield { type, data: bytes.subarray(offset + 8, end - 4), start: offset, end };
    if (type === 'IEND') return;
    offset = end;
  }
}

const JPEG_START_OF_SCAN = 0xda;
const JPEG_END_OF_IMAGE = 0xd9;
// Markers without a length: TEM, RST0–RST7, SOI.
const JPEG_STANDALONE_MARKERS = new Set([0x01, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8]);

/** SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC), which share the range. */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/**
 * Scans a JPEG may have: a progressive photo has about 10. libjpeg-turbo decodes each over the whole image, so one
 * refinement scan repeated 3,000 times in a 155 KB file kept it busy for 90 s.
 */
export const MAX_JPEG_SCANS = 100;

/**
 * The first frame header (SOFn), and the scans counted up to the end marker, found by walking the markers the way
 * libjpeg's next_marker does: segments are skipped by their length, and the entropy-coded data after a scan header
 * is passed over to the next 0xFF that starts a marker (the data stuffs its own 0xFF bytes as 0xFF 0x00).
 */
function readJpegSize(header: HeaderBytes): Size {
  const { bytes } = header;
  let frame: Size | undefined;
  let scans = 0;
  let offset = 2;
  for (;;) {
    // libjpeg skips stray bytes (and entropy-coded data) and 0xFF fill before a marker, and a stuffed 0xFF 0x00.
    offset = bytes.indexOf(0xff, offset);
    if (offset === -1) offset = bytes.length;
    while (offset < bytes.length && bytes[offset] === 0xff) offset++;
    // Past the frame header, a file cut off before its end marker is left to libjpeg-turbo, which reads what is there.
    if (frame && offset + 3 > bytes.length) return frame;
    const marker = header.byte(offset++);
    if (marker === 0x00 || JPEG_STANDALONE_MARKERS.has(marker)) continue;
    if (!frame && (marker === JPEG_START_OF_SCAN || marker === JPEG_END_OF_IMAGE))
      throw header.garbled('no frame header (SOF) before the image data');
    if (frame && marker === JPEG_END_OF_IMAGE) return frame;
    if (marker === JPEG_START_OF_SCAN && ++scans > MAX_JPEG_SCANS) {
      throw new FicocoError(
        `${header.sourceName} is a JPEG in more than ${MAX_JPEG_SCANS} scans (a progressive photo has about 10); ` +
          `FiCoCo takes up to ${MAX_JPEG_SCANS}. Save it again as a baseline JPEG and try again.`,
        'image',
      );
    }
    if (!frame && isStartOfFrame(marker)) frame = readJpegFrameHeader(header, offset);
    const segmentLength = header.uint16be(offset);
    if (segmentLength < 2) throw header.garbled(`a segment length of ${segmentLength}`);
    offset += segmentLength;
  }
}

/** The size in a frame header (SOFn) whose length field starts at `offset`, refused where the decoder cannot read it. */
function readJpegFrameHeader(header: HeaderBytes, offset: number): Size {
  // Length (2), sample precision (1), the number of lines and samples per line, then the number of components.
  const height = header.uint16be(offset + 3);
  if (height === 0)
    throw header.garbled('the frame header leaves the height to a later DNL marker, which is not supported');
  // Four components are CMYK (or YCCK): libjpeg-turbo converts them to CMYK only, never to RGB.
  if (header.byte(offset + 7) === 4) {
    throw new FicocoError(
      `${header.sourceName} is a CMYK JPEG, which FiCoCo does not read; save it as RGB (sRGB) and try again.`,
      'image',
    );
  }
  return { width: header.uint16be(offset + 5), height };
}

/** The first chunk after "RIFF" size "WEBP": a simple lossy (VP8), lossless (VP8L) or extended (VP8X) file. */
function readWebpSize(header: HeaderBytes): Size {
  const chunk = header.ascii(12, 4);
  const payload = 20;
  switch (chunk) {
    case 'VP8 ': {
      // Frame tag (3 bytes), start code 9D 01 2A, then 14-bit width and height (the top 2 bits are scaling).
      if (header.uint16le(payload + 3) !== 0x019d || header.byte(payload + 5) !== 0x2a)
        throw header.garbled('no VP8 start code');
      return { width: header.uint16le(payload + 6) & 0x3fff, height: header.uint16le(payload + 8) & 0x3fff };
    }
    case 'VP8L': {
      // Signature 0x2F, then width − 1 and height − 1 in 14 bits each, least significant bit first.
      if (header.byte(payload) !== 0x2f) throw header.garbled('no VP8L signature');
      const bits = header.uint32le(payload + 1);
      return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
    }
    case 'VP8X':
      // Flags and reserved (4 bytes), then canvas width − 1 and height − 1 in 24 bits each; libwebp holds a still image
      // to it.
      return { width: header.uint24le(payload + 4) + 1, height: header.uint24le(payload + 7) + 1 };
    default:
      throw header.garbled(`the first chunk is "${chunk}", not VP8, VP8L or VP8X`);
  }
}

const GIF_IMAGE_DESCRIPTOR = 0x2c;
const GIF_EXTENSION = 0x21;
/** The LZW minimum code sizes GIF allows; gifuct-js fills tables of 2^size entries (24 took 717 MB, 28 the heap). */
const GIF_CODE_SIZES = { min: 2, max: 8 };

/** The logical screen descriptor, then every image descriptor (see gifBlocks). */
function readGifSizes(header: HeaderBytes): Size & { largestFrame?: Size } {
  const { screen, blocks } = gifStream(header);
  let largestFrame: Size | undefined;
  for (const { frame } of blocks) {
    if (frame && (!largestFrame || frame.width * frame.height > largestFrame.width * largestFrame.height))
      largestFrame = frame;
  }
  return largestFrame ? { ...screen, largestFrame } : screen;
}

/** A block after a GIF's global colour table, as the header check reads it. */
export interface GifBlock {
  /** GIF_IMAGE_DESCRIPTOR (0x2C) for an image, else the extension's label (0xF9: a graphic control extension). */
  label: number;
  start: number;
  /** Just past its data's terminator; past the end of the file when the file stops inside the block. */
  end: number;
  /** Images only: the frame's width and height. */
  frame?: Size;
}

/** A GIF's logical screen, where its blocks start (after the global colour table) and the blocks. */
export interface GifStream {
  screen: Size;
  blocksStart: number;
  blocks: Generator<GifBlock>;
}

/** The GIF's screen and blocks, read lazily: the blocks are checked (frame code sizes) as they are walked. */
export function readGifStream(bytes: Uint8Array, sourceName: string): GifStream {
  return gifStream(new HeaderBytes(bytes, sourceName, 'gif'));
}

function gifStream(header: HeaderBytes): GifStream {
  const screen = { width: header.uint16le(6), height: header.uint16le(8) };
  const globalColorTableBytes = colorTableBytes(header.byte(10));
  header.need(13, globalColorTableBytes);
  const blocksStart = 13 + globalColorTableBytes;
  return { screen, blocksStart, blocks: gifBlocks(header, blocksStart) };
}

/** Every image and extension block from `offset` up to the trailer, the end of the data or an unknown block. */
function* gifBlocks(header: HeaderBytes, offset: number): Generator<GifBlock> {
  while (offset < header.length) {
    const start = offset;
    const block = header.byte(offset);
    if (block === GIF_EXTENSION) {
      offset = skipSubBlocks(header, offset + 2);
      yield { label: header.bytes[start + 1], start, end: offset };
    } else if (block === GIF_IMAGE_DESCRIPTOR) {
      // Left and top (2 bytes each), width, height, then flags that may announce a local colour table.
      const frame = { width: header.uint16le(offset + 5), height: header.uint16le(offset + 7) };
      // The colour table, then the LZW minimum code size, then the data sub-blocks.
      const codeSizeOffset = offset + 10 + colorTableBytes(header.byte(offset + 9));
      checkGifCodeSize(header.byte(codeSizeOffset), header.sourceName);
      offset = skipSubBlocks(header, codeSizeOffset + 1);
      yield { label: block, start, end: offset, frame };
    } else {
      break;
    }
  }
}

/** Refuses an LZW minimum code size GIF does not allow, before any decoder sizes its tables by it. */
export function checkGifCodeSize(codeSize: number, sourceName: string): void {
  if (codeSize >= GIF_CODE_SIZES.min && codeSize <= GIF_CODE_SIZES.max) return;
  throw undecodable(
    sourceName,
    'gif',
    `a frame's LZW code size is ${codeSize}, where GIF allows ${GIF_CODE_SIZES.min} to ${GIF_CODE_SIZES.max}`,
  );
}

/** A global or local colour table's length from its descriptor's flags: 2^(n+1) RGB entries when bit 7 is set. */
function colorTableBytes(flags: number): number {
  return flags & 0x80 ? 3 * 2 ** ((flags & 0x07) + 1) : 0;
}

/**
 * The offset after a chain of length-prefixed sub-blocks and its zero terminator (or past the end when it is cut off).
 */
function skipSubBlocks(header: HeaderBytes, offset: number): number {
  while (offset < header.length) {
    const size = header.bytes[offset];
    offset += size + 1;
    if (size === 0) break;
  }
  return offset;
}
