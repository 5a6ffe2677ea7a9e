import { drawPadded, type PaddedImage } from './padded-image';
import type { RgbImage } from './rgb-image';

/** The PIL resampling filters we reproduce, by PIL's numbering (`resample` in the configs). */
export type ResampleFilter = 'nearest' | 'bilinear' | 'bicubic';

// Pillow's Resample.c: fixed-point weights with 22 fraction bits (32 − 8 result bits − 2 overflow bits).
const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

interface ConvolutionFilter {
  support: number;
  weight(x: number): number;
}

const BILINEAR: ConvolutionFilter = {
  support: 1,
  weight: (x) => {
    const d = Math.abs(x);
    return d < 1 ? 1 - d : 0;
  },
};

const BICUBIC: ConvolutionFilter = {
  support: 2,
  weight: (x) => {
    const a = -0.5;
    const d = Math.abs(x);
    if (d < 1) return ((a + 2) * d - (a + 3)) * d * d + 1;
    if (d < 2) return (((d - 5) * d + 8) * d - 4) * a;
    return 0;
  },
};

/**
 * Per output pixel, the taps over a canvas that may be larger than the image on it: those on the image
 * (first index on the image, count, then ksize fixed-point weights), and the summed weights of the rest.
 */
interface Taps {
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array;
  ksize: number;
  /** The weight of the taps on the canvas around the image, which all read its one colour (0 without padding). */
  canvasWeight: Int32Array;
  /** Every tap's weight: what an output reading only canvas multiplies the colour by. */
  totalWeight: Int32Array;
}

/** Image rows [firstRow, firstRow + rows.height) after the horizontal pass, and a row of pure canvas after it. */
interface PassedRows {
  rows: RgbImage;
  firstRow: number;
  canvasRow: Uint8Array;
}

/**
 * Resizes like Pillow's `Image.resize(size, resample)` on an RGB image, bit for bit: a horizontal
 * then a vertical pass of separable convolution, each rounded and clipped to uint8, a pass skipped
 * when its size is unchanged (nearest uses Pillow's affine-scale path instead).
 * The canvas of a padded image is never drawn: its taps all read one colour, so they add colour × their
 * summed weight, and integer sums come out the same in any order.
 */
export function resizeLikePillow(source: PaddedImage, width: number, height: number, filter: ResampleFilter): RgbImage {
  if (width === source.width && height === source.height) return drawPadded(source);
  if (filter === 'nearest') return resizeNearest(source, width, height);
  const convolution = filter === 'bicubic' ? BICUBIC : BILINEAR;
  const { image } = source;
  const vertical =
    height !== source.height ? computeTaps(source.height, height, convolution, source.top, image.height) : undefined;
  // Only rows the vertical pass reads are resampled horizontally.
  const firstRow = vertical ? vertical.first[0] : 0;
  const endRow = vertical ? vertical.first[height - 1] + vertical.count[height - 1] : image.height;
  const passed =
    width !== source.width
      ? resampleRows(source, firstRow, endRow, computeTaps(source.width, width, convolution, source.left, image.width))
      : padRows(source, firstRow, endRow);
  return vertical ? resampleColumns(passed, vertical) : stackRows(passed, source.top, height);
}

/**
 * Pillow's precompute_coeffs followed by normalize_coeffs_8bpc, over a canvas of `inSize` pixels,
 * then split into the taps on the image at [imageStart, imageStart + imageSize) and the weight of the others.
 */
function computeTaps(
  inSize: number,
  outSize: number,
  filter: ConvolutionFilter,
  imageStart: number,
  imageSize: number,
): Taps {
  const scale = inSize / outSize;
  // Downscaling widens the filter so every input pixel contributes (antialiasing).
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const canvasWeight = new Int32Array(outSize);
  const totalWeight = new Int32Array(outSize);
  const raw = new Float64Array(ksize);
  const inverseScale = 1 / filterScale;
  const imageEnd = imageStart + imageSize;
  for (let out = 0; out < outSize; out++) {
    const center = (out + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      raw[x] = filter.weight((x + xmin - center + 0.5) * inverseScale);
      total += raw[x];
    }
    const start = Math.min(Math.max(xmin, imageStart), imageEnd);
    const end = Math.min(Math.max(xmin + xmax, imageStart), imageEnd);
    for (let x = 0; x < xmax; x++) {
      const normalized = total !== 0 ? raw[x] / total : raw[x];
      const weight = Math.trunc(normalized < 0 ? -0.5 + normalized * ONE : 0.5 + normalized * ONE);
      const input = xmin + x;
      if (input >= start && input < end) weights[out * ksize + input - start] = weight;
      else canvasWeight[out] += weight;
      totalWeight[out] += weight;
    }
    first[out] = start - imageStart;
    count[out] = end - start;
  }
  return { first, count, weights, ksize, canvasWeight, totalWeight };
}

function clip8(accumulator: number): number {
  const value = accumulator >> PRECISION_BITS;
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

/** Horizontal pass over image rows [firstRow, endRow). */
function resampleRows(source: PaddedImage, firstRow: number, endRow: number, taps: Taps): PassedRows {
  const { image, color } = source;
  const width = taps.first.length;
  const height = endRow - firstRow;
  const rgb = new Uint8Array(width * height * 3);
  const { first, count, weights, ksize, canvasWeight, totalWeight } = taps;
  for (let y = 0; y < height; y++) {
    const inRow = (y + firstRow) * image.width * 3;
    for (let out = 0; out < width; out++) {
      let r = HALF + color[0] * canvasWeight[out];
      let g = HALF + color[1] * canvasWeight[out];
      let b = HALF + color[2] * canvasWeight[out];
      let input = inRow + first[out] * 3;
      const k = out * ksize;
      for (let x = 0; x < count[out]; x++, input += 3) {
        const weight = weights[k + x];
        r += image.rgb[input] * weight;
        g += image.rgb[input + 1] * weight;
        b += image.rgb[input + 2] * weight;
      }
      const target = (y * width + out) * 3;
      rgb[target] = clip8(r);
      rgb[target + 1] = clip8(g);
      rgb[target + 2] = clip8(b);
    }
  }
  const canvasRow = new Uint8Array(width * 3);
  for (let out = 0; out < width; out++) {
    for (let channel = 0; channel < 3; channel++)
      canvasRow[out * 3 + channel] = clip8(HALF + color[channel] * totalWeight[out]);
  }
  return { rows: { width, height, rgb }, firstRow, canvasRow };
}

/** In place of a skipped horizontal pass: image rows [firstRow, endRow) with their canvas on either side. */
function padRows(source: PaddedImage, firstRow: number, endRow: number): PassedRows {
  const { image, width, left, color } = source;
  const rowBytes = image.width * 3;
  const imageRows = {
    width: image.width,
    height: endRow - firstRow,
    rgb: image.rgb.subarray(firstRow * rowBytes, endRow * rowBytes),
  };
  const rows = drawPadded({ image: imageRows, width, height: imageRows.height, left, top: 0, color });
  const canvasRow = new Uint8Array(width * 3);
  for (let x = 0; x < width; x++) canvasRow.set(color, x * 3);
  return { rows, firstRow, canvasRow };
}

/** Vertical pass over the rows the horizontal pass produced. */
function resampleColumns(passed: PassedRows, taps: Taps): RgbImage {
  const { rows, firstRow, canvasRow } = passed;
  const width = rows.width;
  const height = taps.first.length;
  const rowStride = width * 3;
  const rgb = new Uint8Array(width * height * 3);
  const { first, count, weights, ksize, canvasWeight } = taps;
  for (let out = 0; out < height; out++) {
    const firstInput = (first[out] - firstRow) * rowStride;
    const k = out * ksize;
    for (let channelIndex = 0; channelIndex < rowStride; channelIndex++) {
      let sum = HALF + canvasRow[channelIndex] * canvasWeight[out];
      let input = firstInput + channelIndex;
      for (let y = 0; y < count[out]; y++, input += rowStride) sum += rows.rgb[input] * weights[k + y];
      rgb[out * rowStride + channelIndex] = clip8(sum);
    }
  }
  return { width, height, rgb };
}

/** In place of a skipped vertical pass: the passed image rows at `top`, canvas rows above and below. */
function stackRows(passed: PassedRows, top: number, height: number): RgbImage {
  const { rows, canvasRow } = passed;
  if (top === 0 && height === rows.height) return rows;
  const rowStride = rows.width * 3;
  const rgb = new Uint8Array(rowStride * height);
  for (let y = 0; y < height; y++) {
    const imageRow = y - top;
    const row =
      imageRow >= 0 && imageRow < rows.height
        ? rows.rgb.subarray(imageRow * rowStride, (imageRow + 1) * rowStride)
        : canvasRow;
    rgb.set(row, y * rowStride);
  }
  return { width: rows.width, height, rgb };
}

/** Pillow's ImagingScaleAffine: source positions accumulate in floating point from half a step. */
function resizeNearest(source: PaddedImage, width: number, height: number): RgbImage {
  const { image, color } = source;
  const sourceColumns = nearestIndices(source.width, width);
  const sourceRows = nearestIndices(source.height, height);
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const imageRow = sourceRows[y] - source.top;
    for (let x = 0; x < width; x++) {
      const imageColumn = sourceColumns[x] - source.left;
      const onImage = imageRow >= 0 && imageRow < image.height && imageColumn >= 0 && imageColumn < image.width;
      const input = (imageRow * image.width + imageColumn) * 3;
      rgb.set(onImage ? image.rgb.subarray(input, input + 3) : color, (y * width + x) * 3);
    }
  }
  return { width, height, rgb };
}

function nearestIndices(inSize: number, outSize: number): Int32Array {
  const step = inSize / outSize;
  const indices = new Int32Array(outSize);
  let position = step * 0.5;
  for (let i = 0; i < outSize; i++, position += step) indices[i] = Math.min(inSize - 1, Math.trunc(position));
  return indices;
}
