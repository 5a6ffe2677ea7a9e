/**
 * A tiled image's tokens for the language model, laid out as transformers' pack_image_features does: the base image's
 * features, then the tiles' features as one grid (tile rows × tile columns of f × f patches) cut to the image, shrunk
 * by bilinear interpolation where anyres_max asks, every row followed by the learned row end. Pure arrays, token-major.
 */
import type { AnyresLayout } from '../../common/anyres';

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
