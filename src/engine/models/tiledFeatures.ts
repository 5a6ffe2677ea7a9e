/**
 * A tiled image's tokens for the language model, laid out as transformers' pack_image_features does: the base image's
 * features, then the tiles' features as one grid (tile rows × tile columns of f × f patches) cut to the image, shrunk
 * by bilinear interpolation where anyres_max asks, every row followed by the learned row end. Pure arrays, token-major.
 */
import { type AnyresLayout, tileCell } from '../../common/anyres';
import type { TokenState } from '../../reduction/tokenState';

/**
 * `passes[0]` is the base image's [f², width] features, `passes[1 …]` the tiles' in row-major tile order; returns
 * [f² + rows · (cols + 1), width] for the layout's grid.
 */
export function packTiledFeatures(
  passes: readonly Float32Array[],
  layout: AnyresLayout,
  featuresPerSide: number,
  rowEnd: Float32Array,
): Float32Array {
  const width = rowEnd.length;
  const f = featuresPerSide;
  const { tiles, unpadded, grid } = layout;
  if (passes.length !== tiles.rows * tiles.cols + 1 || passes.some((pass) => pass.length !== f * f * width))
    throw new Error(`expected ${tiles.rows * tiles.cols + 1} passes of ${f}×${f}×${width} features`);
  // The unpadded grid, gathered from the tiles: grid cell (r, c) is patch (r mod f, c mod f) of tile (r ÷ f, c ÷ f).
  const cut = new Float32Array(unpadded.rows * unpadded.cols * width);
  for (let r = 0; r < unpadded.rows; r++) {
    const row = r + unpadded.firstRow;
    for (let c = 0; c < unpadded.cols; c++) {
      const col = c + unpadded.firstCol;
      const tile = passes[1 + Math.floor(row / f) * tiles.cols + Math.floor(col / f)];
      const patch = (row % f) * f + (col % f);
      cut.set(tile.subarray(patch * width, (patch + 1) * width), (r * unpadded.cols + c) * width);
    }
  }
  const shrunk =
    grid.rows === unpadded.rows && grid.cols === unpadded.cols ? cut : bilinearResize(cut, unpadded, grid, width);
  const base = passes[0];
  const packed = new Float32Array(base.length + grid.rows * (grid.cols + 1) * width);
  packed.set(base);
  for (let r = 0; r < grid.rows; r++) {
    const out = base.length + r * (grid.cols + 1) * width;
    packed.set(shrunk.subarray(r * grid.cols * width, (r + 1) * grid.cols * width), out);
    packed.set(rowEnd, out + grid.cols * width);
  }
  return packed;
}

/**
 * torch's interpolate(mode="bilinear", align_corners=False) of a token-major grid: output cell i reads the input at
 * s = max(0, (i + ½) · in/out − ½), between ⌊s⌋ and ⌊s⌋ + 1 (clamped) with weights 1 − (s − ⌊s⌋) and s − ⌊s⌋.
 */
export function bilinearResize(
  values: Float32Array,
  from: { rows: number; cols: number },
  to: { rows: number; cols: number },
  width: number,
): Float32Array {
  const rows = sampling(from.rows, to.rows);
  const cols = sampling(from.cols, to.cols);
  const out = new Float32Array(to.rows * to.cols * width);
  for (let r = 0; r < to.rows; r++) {
    const top = rows.low[r] * from.cols;
    const bottom = rows.high[r] * from.cols;
    for (let c = 0; c < to.cols; c++) {
      const at = (r * to.cols + c) * width;
      const [a, b, d, e] = [top + cols.low[c], top + cols.high[c], bottom + cols.low[c], bottom + cols.high[c]];
      for (let k = 0; k < width; k++) {
        const upper = cols.lowWeight[c] * values[a * width + k] + cols.highWeight[c] * values[b * width + k];
        const lower = cols.lowWeight[c] * values[d * width + k] + cols.highWeight[c] * values[e * width + k];
        out[at + k] = rows.lowWeight[r] * upper + rows.highWeight[r] * lower;
      }
    }
  }
  return out;
}

/** Where each of `outSize` cells samples an axis of `inSize`: two neighbours and their weights (float32, as torch). */
function sampling(inSize: number, outSize: number) {
  const scale = Math.fround(inSize / outSize);
  const low = new Int32Array(outSize);
  const high = new Int32Array(outSize);
  const lowWeight = new Float32Array(outSize);
  const highWeight = new Float32Array(outSize);
  for (let i = 0; i < outSize; i++) {
    const source = Math.max(0, Math.fround(Math.fround(scale * (i + 0.5)) - 0.5));
    low[i] = Math.floor(source);
    high[i] = Math.min(low[i] + 1, inSize - 1);
    highWeight[i] = Math.fround(source - low[i]);
    lowWeight[i] = Math.fround(1 - highWeight[i]);
  }
  return { low, high, lowWeight, highWeight };
}

/** A tiled image as the decoder reads it, and which of its tokens are row ends (structure: reduction leaves them). */
export interface PackedImage {
  state: TokenState;
  rowEnds: Uint8Array;
}

/** An image seen whole in one pass by a tiled model (one of several in a question): its tokens, then a row end. */
export function packSquare(pass: TokenState, rowEnd: Float32Array): PackedImage {
  const count = pass.count + 1;
  const hidden = new Float32Array(count * rowEnd.length);
  hidden.set(pass.hidden);
  hidden.set(rowEnd, pass.count * rowEnd.length);
  const tokenPatch = Int32Array.of(...pass.spans[0].tokenPatch, -1);
  const rowEnds = new Uint8Array(count);
  rowEnds[pass.count] = 1;
  const sizes = Float32Array.of(...pass.sizes, 1);
  const { patchOwner, grid } = pass.spans[0];
  return { state: packedState(hidden, rowEnd.length, sizes, tokenPatch, patchOwner.slice(), grid), rowEnds };
}

/**
 * The passes' tokens (each pass's state after the projector) packed for the decoder. Its patches are the base image's
 * f² then the grid's cells (row-major), and its one span covers every token, row ends included (tokenPatch −1).
 * Unreduced passes pack exactly as transformers does (packTiledFeatures). Passes a reduction thinned inside the tower
 * are packed by where their tokens came from: a grid token sits at the first cell of the image it holds (its own
 * patch if that is inside), tokens that hold only padding go, rows keep their order, and a row end follows every row
 * that kept a token. Those passes are not shrunk for anyres_max: the reduction already made the image smaller.
 */
export function packTiles(
  passes: readonly TokenState[],
  layout: AnyresLayout,
  featuresPerSide: number,
  rowEnd: Float32Array,
): PackedImage {
  const reduced = passes.some((pass) => pass.count !== featuresPerSide ** 2);
  return reduced
    ? packByProvenance(passes, layout, featuresPerSide, rowEnd)
    : packWhole(passes, layout, featuresPerSide, rowEnd);
}

function packWhole(
  passes: readonly TokenState[],
  layout: AnyresLayout,
  featuresPerSide: number,
  rowEnd: Float32Array,
): PackedImage {
  const hidden = packTiledFeatures(
    passes.map((pass) => pass.hidden),
    layout,
    featuresPerSide,
    rowEnd,
  );
  const base = featuresPerSide ** 2;
  const { rows, cols } = layout.grid;
  const tokenPatch = new Int32Array(layout.tokens).fill(-1);
  const rowEnds = new Uint8Array(layout.tokens);
  for (let i = 0; i < base; i++) tokenPatch[i] = i;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) tokenPatch[base + r * (cols + 1) + c] = base + r * cols + c;
    rowEnds[base + r * (cols + 1) + cols] = 1;
  }
  const patchOwner = new Int32Array(base + rows * cols);
  tokenPatch.forEach((patch, token) => {
    if (patch >= 0) patchOwner[patch] = token;
  });
  const sizes = new Float32Array(layout.tokens).fill(1);
  return { state: packedState(hidden, rowEnd.length, sizes, tokenPatch, patchOwner), rowEnds };
}

function packByProvenance(
  passes: readonly TokenState[],
  layout: AnyresLayout,
  featuresPerSide: number,
  rowEnd: Float32Array,
): PackedImage {
  const f = featuresPerSide;
  const { unpadded } = layout;
  const base = passes[0];
  // Per pass, each patch's cell of the image's grid (−1 on the padding); the base image's patches are its own.
  const cells = passes.map((_, pass) =>
    Int32Array.from({ length: f * f }, (__, patch) => (pass === 0 ? patch : tileCell(layout, f, pass - 1, patch))),
  );
  // Every grid token with the first unpadded cell it holds (its own patch first), as [pass, token, cell].
  const placed: [number, number, number][] = [];
  for (let pass = 1; pass < passes.length; pass++) {
    const [span] = passes[pass].spans;
    const anchor = new Int32Array(span.count).fill(-1);
    for (let token = 0; token < span.count; token++) {
      const own = span.tokenPatch[token];
      if (own >= 0) anchor[token] = cells[pass][own];
    }
    span.patchOwner.forEach((owner, patch) => {
      const token = owner - span.start;
      const cell = owner < 0 ? -1 : cells[pass][patch];
      if (cell >= 0 && (anchor[token] < 0 || (span.tokenPatch[token] < 0 && cell < anchor[token])))
        anchor[token] = cell;
    });
    anchor.forEach((cell, token) => {
      if (cell >= 0) placed.push([pass, span.start + token, cell]);
    });
  }
  placed.sort((a, b) => a[2] - b[2]);
  const width = rowEnd.length;
  const basePatches = f * f;
  const rowsKept = new Set(placed.map(([, , cell]) => Math.floor(cell / unpadded.cols))).size;
  const count = base.count + placed.length + rowsKept;
  const hidden = new Float32Array(count * width);
  const sizes = new Float32Array(count);
  const tokenPatch = new Int32Array(count).fill(-1);
  const rowEnds = new Uint8Array(count);
  // Where each pass's tokens went (−1: cut with the padding); the base image's keep their places.
  const packedIndex = passes.map((pass, i) =>
    i === 0 ? Int32Array.from({ length: pass.count }, (_, t) => t) : new Int32Array(pass.count).fill(-1),
  );
  hidden.set(base.hidden);
  sizes.set(base.sizes);
  tokenPatch.set(base.spans[0].tokenPatch);
  let out = base.count;
  placed.forEach(([pass, token, cell], i) => {
    const { hidden: from, sizes: passSizes, spans } = passes[pass];
    hidden.set(from.subarray(token * width, (token + 1) * width), out * width);
    sizes[out] = passSizes[token];
    // A token made by a reduction (EViT's fused one) is placed at a cell it holds but keeps no patch as its own.
    const own = spans[0].tokenPatch[token - spans[0].start];
    tokenPatch[out] = own >= 0 && cells[pass][own] === cell ? basePatches + cell : -1;
    packedIndex[pass][token] = out++;
    const row = Math.floor(cell / unpadded.cols);
    if (i + 1 === placed.length || Math.floor(placed[i + 1][2] / unpadded.cols) !== row) {
      hidden.set(rowEnd, out * width);
      sizes[out] = 1;
      rowEnds[out++] = 1;
    }
  });
  const patchOwner = new Int32Array(basePatches + unpadded.rows * unpadded.cols).fill(-1);
  passes.forEach((pass, i) => {
    const [span] = pass.spans;
    span.patchOwner.forEach((owner, patch) => {
      const cell = cells[i][patch];
      if (cell >= 0 && owner >= 0) patchOwner[(i === 0 ? 0 : basePatches) + cell] = packedIndex[i][owner];
    });
  });
  return { state: packedState(hidden, width, sizes, tokenPatch, patchOwner), rowEnds };
}

/** The packed tokens as one span whose patches are the base image's then the grid's (`grid`: an image seen whole's). */
function packedState(
  hidden: Float32Array,
  width: number,
  sizes: Float32Array,
  tokenPatch: Int32Array,
  patchOwner: Int32Array,
  grid = { rows: 1, cols: patchOwner.length },
): TokenState {
  const count = sizes.length;
  return {
    hidden,
    count,
    width,
    sizes,
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [{ start: 0, count, grid, patchOwner, tokenPatch }],
  };
}
