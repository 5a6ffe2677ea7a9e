import { FicocoError, shortJson } from '../../common/errors';
import { formatMegapixels, MAX_IMAGE_PIXELS } from '../../common/imageFile';
import { drawPadded, paddedToSquare, unpadded } from './padded-image';
import { resizeLikePillow, type ResampleFilter } from './resample';
import type { RgbImage } from './rgb-image';

type Triple = [number, number, number];

/** A rectangle as fractions of an image's width and height. */
export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** How the shorter side, or both sides, are resized (transformers' `size`). */
export type ResizeTarget = { shortestEdge: number } | { height: number; width: number };

/** The validated subset of preprocessor_config.json that CLIP/SigLIP/LLaVA image processors use. */
export interface ImagePreprocessorConfig {
  /** LLaVA's expand2square (LlavaImageProcessor `do_pad`), filled with `padColor`. */
  padToSquare: boolean;
  /** `Math.trunc(image_mean * 255)` per channel, as expand2square computes it. */
  padColor: Triple;
  /** Undefined when `do_resize` is false. */
  resize: ResizeTarget | undefined;
  resample: ResampleFilter;
  /** Undefined when there is no centre crop. */
  centerCrop: { height: number; width: number } | undefined;
  /** Undefined when `do_rescale` is false. */
  rescaleFactor: number | undefined;
  /** Undefined when `do_normalize` is false. */
  normalize: { mean: Triple; std: Triple } | undefined;
}

export interface PixelValues {
  /** CHW float32 */
  pixelValues: Float32Array;
  channels: 3;
  height: number;
  width: number;
}

const SUPPORTED_PROCESSOR = /^(CLIP|Siglip|Llava|LlavaNext|LlavaOnevision)(ImageProcessor|FeatureExtractor)$/;
/** Tiling processors, whose `do_pad` pads a batch's lists of tiles, not the image to a square. */
const TILING_PROCESSOR = /^(LlavaNext|LlavaOnevision)/;

const PIL_FILTERS: ReadonlyMap<number, ResampleFilter> = new Map([
  [0, 'nearest'],
  [2, 'bilinear'],
  [3, 'bicubic'],
]);
// transformers' CLIPImageProcessor defaults, used when the file leaves a field out.
const OPENAI_CLIP_MEAN: Triple = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD: Triple = [0.26862954, 0.26130258, 0.27577711];

/**
 * The most pixels any preprocessing step may produce: twice the largest image accepted, so none of those is refused.
 */
export const MAX_PREPROCESSING_PIXELS = 2 * MAX_IMAGE_PIXELS;
/**
 * The largest side preprocessor_config.json may ask for: vision towers take 224 to 1536; more is a typo or a hostile
 * file.
 */
export const MAX_PREPROCESSOR_SIDE = 4096;

/**
 * Reads preprocessor_config.json. Missing `do_*` flags default to transformers' CLIPImageProcessor
 * defaults (resize, rescale, normalise on; pad off; centre crop on when `crop_size` is given).
 */
export function parsePreprocessorConfig(json: unknown, sourceName: string): ImagePreprocessorConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new FicocoError(`${sourceName} must hold a JSON object`, 'config');
  }
  // Annotated so TypeScript treats `fields.fail(...)` (returns never) as ending the branch.
  const fields: ConfigFields = new ConfigFields(json as Record<string, unknown>, sourceName);
  const processorType = fields.optionalString('image_processor_type');
  if (processorType !== undefined && !SUPPORTED_PROCESSOR.test(processorType)) {
    fields.fail(
      'image_processor_type',
      `is "${processorType}"; supported: CLIPImageProcessor, SiglipImageProcessor, LlavaImageProcessor, ` +
        'LlavaNextImageProcessor, LlavaOnevisionImageProcessor',
    );
  }
  const mean = fields.optionalTriple('image_mean') ?? OPENAI_CLIP_MEAN;
  const std = fields.optionalTriple('image_std') ?? OPENAI_CLIP_STD;
  if (std.some((s) => s === 0)) fields.fail('image_std', 'must not contain 0');
  // Normalising computes (x − mean) / std in float32: a value out of its range would turn every pixel into ±∞ or NaN.
  const inFloat32 = (value: number) => Number.isFinite(Math.fround(value));
  if (!std.every((s) => inFloat32(s) && inFloat32(1 / s)))
    fields.fail('image_std', `must be numbers float32 holds, as must their inverses, got ${shortJson(std)}`);
  if (!mean.every((m, c) => inFloat32(m) && inFloat32(m / std[c])))
    fields.fail('image_mean', `must be numbers float32 holds (divided by image_std too), got ${shortJson(mean)}`);
  const resampleCode = fields.optionalNumber('resample') ?? 3;
  const resample = PIL_FILTERS.get(resampleCode);
  if (!resample) fields.fail('resample', `is ${resampleCode}; supported: 0 (nearest), 2 (bilinear), 3 (bicubic)`);
  const hasCrop = fields.has('crop_size');
  return {
    padToSquare: !TILING_PROCESSOR.test(processorType ?? '') && (fields.optionalBoolean('do_pad') ?? false),
    padColor: [Math.trunc(mean[0] * 255), Math.trunc(mean[1] * 255), Math.trunc(mean[2] * 255)],
    resize: (fields.optionalBoolean('do_resize') ?? true) ? fields.resizeTarget('size') : undefined,
    resample,
    centerCrop: (fields.optionalBoolean('do_center_crop') ?? hasCrop) ? fields.cropSize('crop_size') : undefined,
    rescaleFactor: (fields.optionalBoolean('do_rescale') ?? true) ? rescaleFactor(fields) : undefined,
    normalize: (fields.optionalBoolean('do_normalize') ?? true) ? { mean, std } : undefined,
  };
}

/** rescale_factor (1/255 unless set): positive, and 255 times it a number float32 holds. */
function rescaleFactor(fields: ConfigFields): number {
  const factor = fields.optionalNumber('rescale_factor') ?? 1 / 255;
  if (!(factor > 0 && Number.isFinite(Math.fround(255 * factor))))
    fields.fail('rescale_factor', `must be a positive number that float32 holds 255 times, got ${shortJson(factor)}`);
  return factor;
}

/**
 * The model's pixel_values for one image, equal to transformers' slow image processor on PIL:
 * pad to square, resize (Pillow-exact), centre crop, then rescale and normalise in float32.
 * The padded square is drawn only when nothing resizes it; the resize reads it in place.
 */
export function preprocessImage(image: RgbImage, config: ImagePreprocessorConfig): PixelValues {
  checkPreprocessingBudget(image.width, image.height, config);
  const source = config.padToSquare ? paddedToSquare(image, config.padColor) : unpadded(image);
  let current: RgbImage;
  if (config.resize) {
    const { width, height } = resizedSize(source.width, source.height, config.resize);
    current = resizeLikePillow(source, width, height, config.resample);
  } else {
    current = drawPadded(source);
  }
  if (config.centerCrop) current = centerCrop(current, config.centerCrop.height, config.centerCrop.width);
  return toNormalizedChw(current, config);
}

/**
 * The part of a width × height image that preprocessImage's output shows, in fractions of the image's width and height:
 * a centre crop sees the middle (0.22, 0, 0.56, 1 for a 1920 × 1080 screenshot cropped square), a padded square more
 * than the image (below 0 and past 1: the padding). What the overlay needs to lay the patch grid over the screenshot.
 */
export function seenRegion(width: number, height: number, config: ImagePreprocessorConfig): Region {
  const padded = config.padToSquare ? paddedToSquare({ width, height, rgb: new Uint8Array(0) }, config.padColor) : null;
  // The output's rectangle in the image's pixels (0 - x: never -0), and the output's size in its own.
  let seen = padded
    ? { left: 0 - padded.left, top: 0 - padded.top, width: padded.width, height: padded.height }
    : { left: 0, top: 0, width, height };
  const output = config.resize ? resizedSize(seen.width, seen.height, config.resize) : seen;
  if (config.centerCrop) {
    const [scaleX, scaleY] = [seen.width / output.width, seen.height / output.height];
    const crop = config.centerCrop;
    seen = {
      left: seen.left + Math.floor((output.width - crop.width) / 2) * scaleX,
      top: seen.top + Math.floor((output.height - crop.height) / 2) * scaleY,
      width: crop.width * scaleX,
      height: crop.height * scaleY,
    };
  }
  return { left: seen.left / width, top: seen.top / height, width: seen.width / width, height: seen.height / height };
}

/** Refuses, before anything is allocated, an image that some preprocessing step would make larger than the budget. */
export function checkPreprocessingBudget(width: number, height: number, config: ImagePreprocessorConfig): void {
  checkStepsWithinBudget({ width, height }, preprocessingSteps(width, height, config));
}

/** Refuses an image for the first of its preprocessing steps that would exceed the budget, naming the step. */
export function checkStepsWithinBudget(
  image: { width: number; height: number },
  steps: readonly PreprocessingStep[],
): void {
  for (const step of steps) {
    const pixels = step.width * step.height;
    if (pixels <= MAX_PREPROCESSING_PIXELS) continue;
    throw new FicocoError(
      `A ${image.width} × ${image.height} image would be ${step.width} × ${step.height} pixels ` +
        `(${formatMegapixels(pixels)} megapixels) ` +
        `${step.name}; FiCoCo's preprocessing works within ${formatMegapixels(MAX_PREPROCESSING_PIXELS)} ` +
        `megapixels per step. ` +
        'Scale the image down and try again.',
      'image',
    );
  }
}

export interface PreprocessingStep {
  /** Completes "would be W × H pixels …" */
  name: string;
  width: number;
  height: number;
}

/**
 * Refuses, at load, settings that would not make every image the vision tower's `side` × `side` input, probed on the
 * `shapes` (as a side × side multiple: squares and long strips by default) — the first question would fail on them.
 * `when`: the images these settings meet, where not all (a tiled model's tiles; its images seen whole).
 */
export function checkMakesTowerInput(
  config: ImagePreprocessorConfig,
  side: number,
  sourceName: string,
  { shapes = ANY_IMAGE, when = '' }: { shapes?: readonly (readonly [number, number])[]; when?: string } = {},
): void {
  for (const [across, down] of shapes) {
    const width = across * side;
    const height = down * side;
    const made = preprocessingSteps(width, height, config).at(-1) ?? { width, height };
    if (made.width !== side || made.height !== side)
      throw new FicocoError(
        `${sourceName} turns a ${width} × ${height} image${when} into ${made.width} × ${made.height} pixels, and the vision ` +
          `tower reads ${side} × ${side} (image_size in config.json); its size and crop_size must give every image that size.`,
        'config',
      );
  }
}

/** Probes for every image's shape: squares and long strips, in sides of the tower's input. */
const ANY_IMAGE: readonly (readonly [number, number])[] = [
  [1, 1],
  [2, 2],
  [3, 1],
  [1, 3],
];

/** The images preprocessImage allocates for a width × height input, step by step. */
function preprocessingSteps(width: number, height: number, config: ImagePreprocessorConfig): PreprocessingStep[] {
  const side = Math.max(width, height);
  const canvas = config.padToSquare ? { width: side, height: side } : { width, height };
  const steps: PreprocessingStep[] = [];
  if (config.resize) {
    const resized = resizedSize(canvas.width, canvas.height, config.resize);
    // The horizontal pass keeps (at most) the image's rows, at the new width.
    if (config.resample !== 'nearest')
      steps.push({ name: 'after the horizontal pass of resizing', width: resized.width, height });
    steps.push({ name: 'after resizing', ...resized });
  } else if (config.padToSquare) {
    steps.push({ name: 'after padding to a square', ...canvas });
  }
  if (config.centerCrop) steps.push({ name: 'after the centre crop', ...config.centerCrop });
  return steps;
}

/** transformers' get_resize_output_image_size with default_to_square=False. */
function resizedSize(width: number, height: number, target: ResizeTarget): { width: number; height: number } {
  if (!('shortestEdge' in target)) return target;
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const newLong = Math.trunc((target.shortestEdge * long) / short);
  return width <= height
    ? { width: target.shortestEdge, height: newLong }
    : { width: newLong, height: target.shortestEdge };
}

/** transformers' center_crop: offsets round down; where the image is smaller, zeros fill in. */
function centerCrop(image: RgbImage, height: number, width: number): RgbImage {
  const top = Math.floor((image.height - height) / 2);
  const left = Math.floor((image.width - width) / 2);
  const rgb = new Uint8Array(width * height * 3);
  const firstColumn = Math.max(0, -left);
  const lastColumn = Math.min(width, image.width - left);
  for (let y = 0; y < height; y++) {
    const sourceRow = top + y;
    if (sourceRow < 0 || sourceRow >= image.height || lastColumn <= firstColumn) continue;
    const source = (sourceRow * image.width + left + firstColumn) * 3;
    rgb.set(image.rgb.subarray(source, source + (lastColumn - firstColumn) * 3), (y * width + firstColumn) * 3);
  }
  return { width, height, rgb };
}

/** HWC uint8 → CHW float32 through a 256-entry table per channel (inputs are bytes). */
function toNormalizedChw(image: RgbImage, config: ImagePreprocessorConfig): PixelValues {
  const { width, height } = image;
  const planeSize = width * height;
  const pixelValues = new Float32Array(planeSize * 3);
  for (let channel = 0; channel < 3; channel++) {
    const table = valueTable(channel, config);
    const plane = channel * planeSize;
    for (let pixel = 0; pixel < planeSize; pixel++) pixelValues[plane + pixel] = table[image.rgb[pixel * 3 + channel]];
  }
  return { pixelValues, channels: 3, height, width };
}

/**
 * What each byte value becomes, with numpy's rounding: transformers rescales in float64 then
 * casts to float32, and normalises in float32 (Math.fround after each operation reproduces that).
 */
function valueTable(channel: number, config: ImagePreprocessorConfig): Float32Array {
  const table = new Float32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let value = config.rescaleFactor === undefined ? byte : Math.fround(byte * config.rescaleFactor);
    if (config.normalize) {
      const mean = Math.fround(config.normalize.mean[channel]);
      const std = Math.fround(config.normalize.std[channel]);
      value = Math.fround(Math.fround(value - mean) / std);
    }
    table[byte] = value;
  }
  return table;
}

/** Typed access to the config's fields, failing with the file and field named. */
class ConfigFields {
  constructor(
    private readonly json: Record<string, unknown>,
    private readonly sourceName: string,
  ) {}

  has(field: string): boolean {
    return this.json[field] !== undefined && this.json[field] !== null;
  }

  fail(field: string, problem: string): never {
    throw new FicocoError(`${this.sourceName}: field "${field}" ${problem}`, 'config');
  }

  optionalBoolean(field: string): boolean | undefined {
    const value = this.json[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') this.fail(field, `must be true or false, got ${shortJson(value)}`);
    return value;
  }

  optionalNumber(field: string): number | undefined {
    const value = this.json[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value))
      this.fail(field, `must be a number, got ${shortJson(value)}`);
    return value;
  }

  optionalString(field: string): string | undefined {
    const value = this.json[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') this.fail(field, `must be a string, got ${shortJson(value)}`);
    return value;
  }

  optionalTriple(field: string): Triple | undefined {
    const value = this.json[field];
    if (value === undefined || value === null) return undefined;
    const isTriple =
      Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === 'number' && Number.isFinite(v));
    if (!isTriple) this.fail(field, `must be a list of 3 numbers (one per RGB channel), got ${shortJson(value)}`);
    return value as Triple;
  }

  /** `size`: {shortest_edge}, {height, width}, or a bare int meaning shortest_edge (CLIP's convention). */
  resizeTarget(field: string): ResizeTarget {
    const value = this.json[field];
    if (typeof value === 'number') return { shortestEdge: this.side(field, value) };
    const size = this.objectField(field, '{"shortest_edge": N} or {"height": H, "width": W}');
    if (size.shortest_edge !== undefined) {
      if (size.longest_edge !== undefined && size.longest_edge !== null)
        this.fail(field, 'with "longest_edge" is not supported');
      return { shortestEdge: this.side(`${field}.shortest_edge`, size.shortest_edge) };
    }
    return { height: this.side(`${field}.height`, size.height), width: this.side(`${field}.width`, size.width) };
  }

  /** `crop_size`: {height, width}, or a bare int meaning a square. */
  cropSize(field: string): { height: number; width: number } {
    const value = this.json[field];
    if (typeof value === 'number') {
      const side = this.side(field, value);
      return { height: side, width: side };
    }
    const size = this.objectField(field, '{"height": H, "width": W}');
    return { height: this.side(`${field}.height`, size.height), width: this.side(`${field}.width`, size.width) };
  }

  private objectField(field: string, expected: string): Record<string, unknown> {
    const value = this.json[field];
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.fail(field, `must be ${expected}, got ${shortJson(value)}`);
    }
    return value as Record<string, unknown>;
  }

  /** An image side in pixels: the file is untrusted input, so it is bounded before it sizes any allocation. */
  private side(field: string, value: unknown): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      this.fail(field, `must be a positive integer, got ${shortJson(value)}`);
    }
    if (value > MAX_PREPROCESSOR_SIDE)
      this.fail(field, `is ${value} pixels; FiCoCo takes at most ${MAX_PREPROCESSOR_SIDE}`);
    return value;
  }
}
