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

/** Per output pixel: first input index, number of taps, and ksize fixed-point weights. */
interface Taps {
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array;
  ksize: number;
}

/**
 * Resizes like Pillow's `Image.resize(size, resample)` on an RGB image, bit for bit: a horizontal
 * then a vertical pass of separable convolution, each rounded and clipped to uint8, a pass skipped
 * when its size is unchanged (nearest uses Pillow's affine-scale path instead).
 */
export function resizeLikePillow(image: RgbImage, width: number, height: number, filter: ResampleFilter): RgbImage {
  if (width === image.width && height === image.height) return { width, height, rgb: image.rgb.slice() };
  if (filter === 'nearest') return resizeNearest(image, width, height);
  const convolution = filter === 'bicubic' ? BICUBIC : BILINEAR;
  const vertical = computeTaps(image.height, height, convolution);
  // Only rows the vertical pass reads are resampled horizontally.
  const firstRow = vertical.first[0];
  const lastRow = vertical.first[height - 1] + vertical.count[height - 1];
  let current = image;
  let rowOffset = 0;
  if (width !== image.width) {
    current = resampleRows(image, firstRow, lastRow, computeTaps(image.width, width, convolution));
    rowOffset = firstRow;
  }
  if (height !== image.height) current = resampleColumns(current, rowOffset, vertical);
  return current;
}

/** Pillow's precompute_coeffs followed by normalize_coeffs_8bpc. */
function computeTaps(inSize: number, outSize: number, filter: ConvolutionFilter): Taps {
  const scale = inSize / outSize;
  // Downscaling widens the filter so every input pixel contributes (antialiasing).
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const raw = new Float64Array(ksize);
  const inverseScale = 1 / filterScale;
  for (let out = 0; out < outSize; out++) {
    const center = (out + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      raw[x] = filter.weight((x + xmin - center + 0.5) * inverseScale);
      total += raw[x];
    }
    for (let x = 0; x < xmax; x++) {
      const normalized = total !== 0 ? raw[x] / total : raw[x];
      weights[out * ksize + x] = Math.trunc(normalized < 0 ? -0.5 + normalized * ONE : 0.5 + normalized * ONE);
    }
    first[out] = xmin;
    count[out] = xmax;
  }
  return { first, count, weights, ksize };
}

function clip8(accumulator: number): number {
  const value = accumulator >> PRECISION_BITS;
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

/** Horizontal pass over rows [firstRow, lastRow) of the input. */
function resampleRows(image: RgbImage, firstRow: number, lastRow: number, taps: Taps): RgbImage {
  const width = taps.first.length;
  const height = lastRow - firstRow;
  const rgb = new Uint8Array(width * height * 3);
  const { first, count, weights, ksize } = taps;
  for (let y = 0; y < height; y++) {
    const inRow = (y + firstRow) * image.width * 3;
    for (let out = 0; out < width; out++) {
      let r = HALF;
      let g = HALF;
      let b = HALF;
      let source = inRow + first[out] * 3;
      const k = out * ksize;
      for (let x = 0; x < count[out]; x++, source += 3) {
        const weight = weights[k + x];
        r += image.rgb[source] * weight;
        g += image.rgb[source + 1] * weight;
        b += image.rgb[source + 2] * weight;
      }
      const target = (y * width + out) * 3;
      rgb[target] = clip8(r);
      rgb[target + 1] = clip8(g);
      rgb[target + 2] = clip8(b);
    }
  }
  return { width, height, rgb };
}

/** Vertical pass; `rowOffset` is the input row that `image` starts at. */
function resampleColumns(image: RgbImage, rowOffset: number, taps: Taps): RgbImage {
  const width = image.width;
  const height = taps.first.length;
  const rowStride = width * 3;
  const rgb = new Uint8Array(width * height * 3);
  const { first, count, weights, ksize } = taps;
  for (let out = 0; out < height; out++) {
    const firstSource = (first[out] - rowOffset) * rowStride;
    const k = out * ksize;
    for (let channelIndex = 0; channelIndex < rowStride; channelIndex++) {
      let sum = HALF;
      let source = firstSource + channelIndex;
      for (let y = 0; y < count[out]; y++, source += rowStride) sum += image.rgb[source] * weights[k + y];
      rgb[out * rowStride + channelIndex] = clip8(sum);
    }
  }
  return { width, height, rgb };
}

/** Pillow's ImagingScaleAffine: source positions accumulate in floating point from half a step. */
function resizeNearest(image: RgbImage, width: number, height: number): RgbImage {
  const sourceColumns = nearestIndices(image.width, width);
  const sourceRows = nearestIndices(image.height, height);
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const source = (sourceRows[y] * image.width + sourceColumns[x]) * 3;
      rgb.set(image.rgb.subarray(source, source + 3), (y * width + x) * 3);
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
