/**
 * AnyRes geometry (LLaVA-NeXT "anyres", LLaVA-OneVision "anyres_max_N"): how a screenshot at its own size
 * becomes tiles for the vision tower and how many visual tokens reach the language model — the same integer
 * arithmetic as transformers' image processors, models and processors (research notes: anyres.md).
 * Pure numbers, so the image processor, the model, the prompt and the FLOPs model all count alike.
 */

export interface Size {
  height: number;
  width: number;
}

/** What a model family's config says about tiling. */
export interface AnyresSpec {
  /** a tile's side in pixels: the tower's input size (336 for CLIP-L/336, 384 for SigLIP/384) */
  tileSize: number;
  /** features per tile side out of the tower (24 for 336/14, 27 for 384/14) */
  featuresPerSide: number;
  /** the resolutions an image may be tiled at, as (height, width) — image_grid_pinpoints */
  pinpoints: readonly (readonly [number, number])[];
  /** visual tokens of the whole image resized to one tile (the base image) */
  baseTokens: number;
  /** anyres_max_N: grids above N tiles' worth (× 1.1²) are shrunk to about N tiles' worth */
  maxTiles?: number;
}

/** How one image is tiled and how many visual tokens it yields. */
export interface AnyresLayout {
  /** the pinpoint resolution chosen */
  best: Size;
  /** the image resized into `best`, keeping its aspect ratio */
  resized: Size;
  /** black padding around `resized` up to `best` (the odd pixel goes bottom / right) */
  padding: { top: number; bottom: number; left: number; right: number };
  /** tiles across and down; the tower also runs once on the base image */
  tiles: { rows: number; cols: number };
  /** the tiles' feature grid without the padding's features: its size, and where it starts in the full grid */
  unpadded: { rows: number; cols: number; firstRow: number; firstCol: number };
  /** the feature grid the language model sees: `unpadded`, shrunk (bilinear) for anyres_max when it is too large */
  grid: { rows: number; cols: number };
  /** base image tokens + grid tokens + one newline token per grid row */
  tokens: number;
}

export function anyresLayout(spec: AnyresSpec, image: Size): AnyresLayout {
  if (!(image.height >= 1 && image.width >= 1)) throw new RangeError(`an image of ${image.width}×${image.height}`);
  const best = bestResolution(image, spec.pinpoints);
  const resized = resizedToFit(image, best);
  const tiles = { rows: best.height / spec.tileSize, cols: best.width / spec.tileSize };
  if (!Number.isInteger(tiles.rows) || !Number.isInteger(tiles.cols))
    throw new RangeError(`pinpoint ${best.height}×${best.width} is not a whole number of ${spec.tileSize}-px tiles`);
  const f = spec.featuresPerSide;
  const unpadded = unpaddedGrid({ rows: tiles.rows * f, cols: tiles.cols * f }, image);
  const grid = spec.maxTiles === undefined ? unpadded : shrunkGrid(unpadded, f, spec.maxTiles);
  const { rows, cols } = grid;
  return {
    best,
    resized,
    padding: {
      ...split(best.height - resized.height, 'top', 'bottom'),
      ...split(best.width - resized.width, 'left', 'right'),
    },
    tiles,
    unpadded,
    grid: { rows, cols },
    tokens: spec.baseTokens + rows * cols + rows,
  };
}

/**
 * The pinpoint that shows the most of the image's pixels (upscaling counts only up to the original), ties to the
 * one that wastes the fewest: effective = min(⌊W·s⌋·⌊H·s⌋, W·H) with s = min(w/W, h/H), wasted = h·w − effective.
 */
export function bestResolution(image: Size, pinpoints: AnyresSpec['pinpoints']): Size {
  let best: Size | undefined;
  let bestEffective = -1;
  let bestWasted = Infinity;
  for (const [height, width] of pinpoints) {
    const scale = Math.min(width / image.width, height / image.height);
    const effective = Math.min(
      Math.trunc(image.width * scale) * Math.trunc(image.height * scale),
      image.width * image.height,
    );
    const wasted = height * width - effective;
    if (effective > bestEffective || (effective === bestEffective && wasted < bestWasted)) {
      best = { height, width };
      bestEffective = effective;
      bestWasted = wasted;
    }
  }
  if (!best) throw new RangeError('image_grid_pinpoints is empty');
  return best;
}

/** The side with the smaller scale fits the target exactly; the other is min(⌈side·scale⌉, target). */
export function resizedToFit(image: Size, target: Size): Size {
  const scaleW = target.width / image.width;
  const scaleH = target.height / image.height;
  return scaleW < scaleH
    ? { width: target.width, height: Math.min(Math.ceil(image.height * scaleW), target.height) }
    : { height: target.height, width: Math.min(Math.ceil(image.width * scaleH), target.width) };
}

/**
 * The tiles' feature grid without the rows (or columns) that only saw padding: the image's extent in features is
 * trunc(round(side · (grid / other side), 7)) — transformers' float order — centred, so an odd remainder keeps one more
 * row or column. `first` is the first row (column) kept.
 */
export function unpaddedGrid(
  grid: { rows: number; cols: number },
  image: Size,
): { rows: number; cols: number; firstRow: number; firstCol: number } {
  if (image.width / image.height > grid.cols / grid.rows) {
    const rows = Math.trunc(round7(image.height * (grid.cols / image.width)));
    const firstRow = Math.floor((grid.rows - rows) / 2);
    return { rows: grid.rows - 2 * firstRow, cols: grid.cols, firstRow, firstCol: 0 };
  }
  const cols = Math.trunc(round7(image.width * (grid.rows / image.height)));
  const firstCol = Math.floor((grid.cols - cols) / 2);
  return { rows: grid.rows, cols: grid.cols - 2 * firstCol, firstRow: 0, firstCol };
}

/** The unpadded grid's cell (row-major) that patch `patch` of tile `tile` (both row-major) sees, or −1 on the padding. */
export function tileCell(layout: AnyresLayout, featuresPerSide: number, tile: number, patch: number): number {
  const f = featuresPerSide;
  const { tiles, unpadded } = layout;
  const r = Math.floor(tile / tiles.cols) * f + Math.floor(patch / f) - unpadded.firstRow;
  const c = (tile % tiles.cols) * f + (patch % f) - unpadded.firstCol;
  return r >= 0 && r < unpadded.rows && c >= 0 && c < unpadded.cols ? r * unpadded.cols + c : -1;
}

/** Per tile (row-major), how many of its f² patches see the image rather than its padding. */
export function tilePatchesOnImage(layout: AnyresLayout, featuresPerSide: number): number[] {
  const patches = featuresPerSide ** 2;
  return Array.from({ length: layout.tiles.rows * layout.tiles.cols }, (_, tile) => {
    let onImage = 0;
    for (let patch = 0; patch < patches; patch++) if (tileCell(layout, featuresPerSide, tile, patch) >= 0) onImage++;
    return onImage;
  });
}

/** anyres_max_N: r = √(rows·cols / (N·f²)); above 1.1 the grid is resized (bilinear) to rows // r × cols // r. */
export function shrunkGrid(
  grid: { rows: number; cols: number },
  featuresPerSide: number,
  maxTiles: number,
): { rows: number; cols: number } {
  const ratio = Math.sqrt((grid.rows * grid.cols) / (maxTiles * featuresPerSide ** 2));
  return ratio > 1.1 ? { rows: floorDivide(grid.rows, ratio), cols: floorDivide(grid.cols, ratio) } : grid;
}

/**
 * Python's `a // b` on positive floats, as transformers sizes the shrunk grid: (a − fmod(a, b)) / b, floored. It can be
 * one below ⌊a / b⌋, where the division rounds up to a whole number: 135 // (135 / 81) is 80.
 */
function floorDivide(a: number, b: number): number {
  const quotient = (a - (a % b)) / b;
  const floored = Math.floor(quotient);
  return quotient - floored > 0.5 ? floored + 1 : floored;
}

/** Python's round(x, 7), which transformers applies before truncating, so 26.9999999 counts as 27. */
function round7(x: number): number {
  return Math.round(x * 1e7) / 1e7;
}

/** divmod(total, 2): the first side gets half, the second half plus the odd pixel. */
function split<A extends string, B extends string>(total: number, first: A, second: B): Record<A | B, number> {
  const before = Math.floor(total / 2);
  return { [first]: before, [second]: total - before } as Record<A | B, number>;
}
