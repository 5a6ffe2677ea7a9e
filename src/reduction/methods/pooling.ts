import { ParamSpec, defineMethod } from '../method';
import { Correlate, Filter, Step, oneReceiverEach, splitByKept } from '../paradigm';
import { mergeIntoReceivers } from '../stages/compress';
import { VisualSpan } from '../tokenState';

const PARAMS = {} satisfies Record<string, ParamSpec>;

type Grid = { rows: number; cols: number };

/**
 * Windows per row band of the pooled grid: rows' × cols' = windows when a factorisation fits the grid
 * (the one closest to the grid's aspect, fewer rows on a tie: 12 on a square grid → 3 × 4); otherwise
 * rows' ≈ √(windows · rows / cols) bands of ⌈windows / rows'⌉ or ⌊windows / rows'⌋ windows.
 */
export function poolingBands(grid: Grid, windows: number): number[] {
  const aspect = Math.log(grid.rows / grid.cols);
  const distance = (rows: number) => Math.abs(Math.log((rows * rows) / windows) - aspect);
  let bands = 0;
  for (let rows = 1; rows <= windows; rows++) {
    const cols = windows / rows;
    if (!Number.isInteger(cols) || rows > grid.rows || cols > grid.cols) continue;
    // A tolerance, so that mirrored factorisations (3 × 4, 4 × 3) tie exactly.
    if (bands === 0 || distance(rows) < distance(bands) - 1e-9) bands = rows;
  }
  if (bands === 0)
    bands = Math.max(
      Math.ceil(windows / grid.cols),
      Math.min(grid.rows, windows, Math.round(Math.sqrt((windows * grid.rows) / grid.cols))),
    );
  return Array.from({ length: bands }, (_, band) => Math.floor(windows / bands) + (band < windows % bands ? 1 : 0));
}

/** Partition bounds: part i of n over `length` cells is [⌊i·length/n⌋, ⌊(i+1)·length/n⌋). */
const partOf = (cell: number, length: number, parts: number) => Math.floor(((cell + 1) * parts - 1) / length);

/** The smallest rectangle of the patch grid that holds the span's patches (all of it, unless a tile's padding went). */
function patchBounds(span: VisualSpan): { top: number; left: number; rows: number; cols: number } {
  const { cols } = span.grid;
  const patches = Array.from(span.tokenPatch).filter((patch) => patch >= 0);
  const rowsOf = patches.map((patch) => Math.floor(patch / cols));
  const colsOf = patches.map((patch) => patch % cols);
  const [top, left] = [Math.min(...rowsOf), Math.min(...colsOf)];
  return { top, left, rows: Math.max(...rowsOf) - top + 1, cols: Math.max(...colsOf) - left + 1 };
}

/**
 * Window of each span token (span order) over the rectangle its patches fill; a token without a patch (the 'full'
 * strategy's [CLS]) joins window 0.
 */
export function poolingWindows(span: VisualSpan, windows: number): Int32Array {
  const bounds = patchBounds(span);
  const bands = poolingBands(bounds, windows);
  const firstWindow = bands.map((_, band) => bands.slice(0, band).reduce((a, b) => a + b, 0));
  return Int32Array.from(span.tokenPatch, (patch) => {
    if (patch < 0) return 0;
    const row = Math.floor(patch / span.grid.cols) - bounds.top;
    const col = (patch % span.grid.cols) - bounds.left;
    const band = partOf(row, bounds.rows, bands.length);
    return firstWindow[band] + partOf(col, bounds.cols, bands[band]);
  });
}

/** T = the first token of each window, S = the rest. */
const windowFilter: Filter = ({ span, remove }) => {
  const windowOf = poolingWindows(span, span.count - remove);
  const seen = new Set<number>();
  const representatives = Array.from(windowOf.keys()).filter(
    (offset) => !seen.has(windowOf[offset]) && seen.add(windowOf[offset]),
  );
  if (representatives.length !== span.count - remove)
    throw new Error(
      `pooling to ${span.count - remove} windows found ${representatives.length} non-empty ones: it needs ` +
        `a whole rectangle of the patch grid`,
    );
  return splitByKept(span, representatives);
};

/** Each source → its window's representative, weight 1. */
const windowCorrelate: Correlate = ({ span, remove }, split) => {
  const windowOf = poolingWindows(span, span.count - remove);
  const representativeOf = new Map<number, number>();
  for (const target of split.targets) representativeOf.set(windowOf[target - span.start], target);
  return oneReceiverEach(
    Int32Array.from(split.sources, (source) => representativeOf.get(windowOf[source - span.start])!),
  );
};

export const pooling = defineMethod({
  name: 'pooling',
  description:
    "Spatial average pooling of each image's projected tokens to the budget, window by window over the " +
    'patch grid.',
  reference:
    'The pooling / downsampling baseline (cf. VTC-Bench, arXiv 2510.07143) at the projector output: ' +
    "average pooling over a rows' × cols' partition of the grid with floor bounds " +
    '(AdaptiveAvgPool2d uses ceil ends, so its windows can overlap; a partition keeps provenance exact). ' +
    'Sizes weight the mean, so unreduced tokens average plainly.',
  params: PARAMS,
  plan(model, keep, params) {
    return [
      {
        site: 'projector',
        needs: {},
        filter: windowFilter,
        correlate: windowCorrelate,
        compress: mergeIntoReceivers({ weighting: 'size', normalize: true }),
        remove: model.visualTokens - keep,
        params,
      } satisfies Step,
    ];
  },
});
