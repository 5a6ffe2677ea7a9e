import { decompressFrame, parseGIF, type ParsedFrameWithoutPatch } from 'gifuct-js';
import { FicocoError } from '../../common/errors';
import {
  checkFrameSize,
  checkGifCodeSize,
  type GifBlock,
  readGifStream,
  TRUNCATED,
  undecodable,
} from '../../common/imageFile';
import { reasonOf, type RgbImage } from './rgb-image';

type Rgb = [number, number, number];

const GRAPHIC_CONTROL_LABEL = 0xf9;

interface FirstFrame {
  screenWidth: number;
  screenHeight: number;
  frame: ParsedFrameWithoutPatch | undefined;
  /** The local palette if the frame has one, else the global one, else none. */
  palette: Rgb[] | undefined;
}

/**
 * Decodes the first frame of a GIF the way PIL 9.4 loads frame 0 and converts it to RGB:
 * the canvas starts filled with the transparent index (or index 0), the frame's indices are
 * written into their rectangle unblended, then every index is looked up in the palette.
 * Any exception from the library (gifuct-js throws range errors on odd files) becomes an 'image' error.
 */
export function decodeGif(bytes: Uint8Array, sourceName: string): RgbImage {
  try {
    return decodeFirstFrame(bytes, sourceName);
  } catch (error) {
    if (error instanceof FicocoError) throw error;
    // The parser reads past the end of a cut-off file and fails with a range error.
    const reason = error instanceof RangeError ? TRUNCATED : reasonOf(error);
    throw undecodable(sourceName, 'gif', reason);
  }
}

function decodeFirstFrame(bytes: Uint8Array, sourceName: string): RgbImage {
  const firstFrameGif = firstFrameOnly(bytes, sourceName);
  const { screenWidth: width, screenHeight: height, frame, palette } = readFirstFrame(firstFrameGif, sourceName);
  if (!frame) throw undecodable(sourceName, 'gif', 'the file holds no image frame');
  const { left, top, width: frameWidth, height: frameHeight } = frame.dims;
  if (frame.pixels.length < frameWidth * frameHeight) throw undecodable(sourceName, 'gif', TRUNCATED);

  const indices = new Uint8Array(width * height).fill(frame.transparentIndex ?? 0);
  for (let y = Math.max(0, top); y < Math.min(height, top + frameHeight); y++) {
    for (let x = Math.max(0, left); x < Math.min(width, left + frameWidth); x++) {
      indices[y * width + x] = frame.pixels[(y - top) * frameWidth + (x - left)];
    }
  }
  return lookUpPalette(indices, width, height, palette);
}

/**
 * The file cut down to what frame 0 needs: header, screen and global colour table, the graphic control extension
 * before the frame (its transparent index) and the frame's image block. gifuct-js parses every block into objects
 * (2 million empty frames took 8.6 s and 1.3 GB) and reads some blocks otherwise than the header check, so it is
 * given only these, as the header check read them.
 */
function firstFrameOnly(bytes: Uint8Array, sourceName: string): Uint8Array {
  const { blocksStart, blocks } = readGifStream(bytes, sourceName);
  let control: GifBlock | undefined;
  for (const block of blocks) {
    if (block.frame) {
      const controlBytes = control ? [bytes.subarray(control.start, control.end)] : [];
      return Buffer.concat([bytes.subarray(0, blocksStart), ...controlBytes, bytes.subarray(block.start, block.end)]);
    }
    // gifuct reads a graphic control extension as 8 fixed bytes: pass on only one of that shape.
    const isControl = block.label === GRAPHIC_CONTROL_LABEL && block.end - block.start === 8;
    if (isControl && bytes[block.start + 2] === 4) control = block;
  }
  // No frame: gifuct finds none in the screen alone either, and the caller says so.
  return bytes.subarray(0, blocksStart);
}

function readFirstFrame(bytes: Uint8Array, sourceName: string): FirstFrame {
  const gif = parseGIF(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  const first = gif.frames.find((block) => 'image' in block);
  const image = first && 'image' in first ? first : undefined;
  let frame: ParsedFrameWithoutPatch | undefined;
  if (image) {
    // Checked again as gifuct parsed it, before it allocates: its reading of the blocks may differ from the header's.
    checkFrameSize(image.image.descriptor.width, image.image.descriptor.height, sourceName);
    checkGifCodeSize(image.image.data.minCodeSize, sourceName);
    frame = decompressFrame(image, gif.gct, false);
  }
  const palette = image?.image.descriptor.lct.exists ? frame?.colorTable : gif.lsd.gct.exists ? gif.gct : undefined;
  return { screenWidth: gif.lsd.width, screenHeight: gif.lsd.height, frame, palette };
}

/** Without any palette PIL opens the GIF as grayscale: the index is the gray level. */
function lookUpPalette(indices: Uint8Array, width: number, height: number, palette: Rgb[] | undefined): RgbImage {
  const rgb = new Uint8Array(indices.length * 3);
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i];
    rgb.set(palette ? (palette[index] ?? [0, 0, 0]) : [index, index, index], i * 3);
  }
  return { width, height, rgb };
}
