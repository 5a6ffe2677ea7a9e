/**
 * "Show reduction": the image with its patch grid drawn over it, each patch marked by what became of it —
 * kept as its own token, merged into another token, or dropped. Plain elements in a CSS grid, so it needs
 * no canvas and follows the theme.
 */
import type { ImageReduction, ImageRegion, PatchGrid, TurnImage } from '../src/protocol/webview';

/** Per patch state: its drawing (a class of style.css), its word in the caption's counts, and what it means. */
const PATCH_STATES: Record<string, { className: string; label: string; meaning: string }> = {
  k: { className: 'kept', label: 'kept', meaning: 'kept as its own token' },
  m: { className: 'merged', label: 'merged', meaning: 'merged into another token' },
  d: { className: 'dropped', label: 'dropped', meaning: 'dropped' },
};

/** The figure for one image: the picture, the grid over it, and a caption with the counts. */
export function reductionFigure(doc: Document, image: TurnImage, reduction: ImageReduction): HTMLElement {
  const { figure, frame, caption } = patchFigure(doc, image, reduction, `${image.name} as the model saw it`);
  if (reduction.tileBorders) {
    // A tiled image's grid covers the screenshot as it is: keep its shape, and draw where the tiles meet.
    frame.style.aspectRatio = `${reduction.cols} / ${reduction.rows}`;
    for (const row of reduction.tileBorders.rows) frame.append(tileBorder(doc, 'top', row / reduction.rows));
    for (const col of reduction.tileBorders.cols) frame.append(tileBorder(doc, 'left', col / reduction.cols));
  }
  if (reduction.seen) showSeenPart(frame, reduction, reduction.seen);
  caption.textContent = reductionSummary(reduction);
  return figure;
}

/**
 * A tiled image's thumbnail: the whole image squashed to one tile, which the model reads besides the tiles, with what
 * became of its patches.
 */
export function thumbnailFigure(doc: Document, image: TurnImage, thumbnail: PatchGrid): HTMLElement {
  const { figure, caption } = patchFigure(doc, image, thumbnail, `${image.name} squashed to one tile`);
  figure.classList.add('whole-image');
  caption.textContent = `Whole image in one tile: ${reductionSummary(thumbnail)}`;
  return figure;
}

/** A figure of the picture (stretched over the frame) with a grid of patches drawn over it; its caption is empty. */
function patchFigure(
  doc: Document,
  image: TurnImage,
  grid: PatchGrid,
  alt: string,
): { figure: HTMLElement; frame: HTMLElement; caption: HTMLElement } {
  const figure = doc.createElement('figure');
  figure.className = 'reduction';
  const frame = doc.createElement('div');
  frame.className = 'reduction-frame';
  if (image.src) {
    const picture = doc.createElement('img');
    picture.src = image.src;
    picture.alt = alt;
    frame.append(picture);
  }
  const cells = doc.createElement('div');
  cells.className = 'reduction-grid';
  // minmax(0, 1fr), not 1fr (whose least is the cells' borders): a tiled screenshot's 162 columns in 252 px would
  // each stay 2 px wide, and the grid would run past the picture and its tile borders.
  cells.style.gridTemplateColumns = `repeat(${grid.cols}, minmax(0, 1fr))`;
  cells.style.gridTemplateRows = `repeat(${grid.rows}, minmax(0, 1fr))`;
  cells.setAttribute('aria-hidden', 'true');
  for (const state of grid.patches) {
    const cell = doc.createElement('div');
    cell.className = `patch ${PATCH_STATES[state].className}`;
    cells.append(cell);
  }
  frame.append(cells);
  const caption = doc.createElement('figcaption');
  figure.append(frame, caption);
  return { figure, frame, caption };
}

/**
 * Lays the picture under the grid as the model saw it: only the middle of a centre-cropped screenshot shows, and a
 * padded one sits inside the square with the padding around it.
 */
function showSeenPart(frame: HTMLElement, grid: PatchGrid, seen: ImageRegion): void {
  const { left, top, width, height } = seen;
  frame.classList.add('part-seen');
  frame.style.aspectRatio = `${grid.cols} / ${grid.rows}`;
  const picture = frame.querySelector('img');
  if (!picture) return;
  picture.style.left = percent(-left / width);
  picture.style.top = percent(-top / height);
  picture.style.width = percent(1 / width);
  picture.style.height = percent(1 / height);
}

/** A dashed line across the frame at `fraction` of its height (top) or width (left). */
function tileBorder(doc: Document, side: 'top' | 'left', fraction: number): HTMLElement {
  const line = doc.createElement('div');
  line.className = `tile-border ${side === 'top' ? 'across' : 'down'}`;
  line.style[side] = percent(fraction);
  line.setAttribute('aria-hidden', 'true');
  return line;
}

/**
 * What each drawing means, under the figures. A swatch is a patch drawn as in the figures, over a stand-in for the
 * picture; screen readers read the meanings and skip the swatches.
 */
export function reductionLegend(doc: Document): HTMLElement {
  const legend = doc.createElement('ul');
  legend.className = 'reduction-legend';
  legend.setAttribute('aria-label', 'What the drawing shows');
  for (const { className, meaning } of Object.values(PATCH_STATES)) {
    const swatch = doc.createElement('span');
    swatch.className = 'legend-swatch';
    swatch.setAttribute('aria-hidden', 'true');
    const patch = doc.createElement('span');
    patch.className = `patch ${className}`;
    swatch.append(patch);
    const item = doc.createElement('li');
    item.append(swatch, meaning);
    legend.append(item);
  }
  return legend;
}

/** "16 kept, 120 merged, 8 dropped of 144 patches" */
export function reductionSummary(reduction: PatchGrid): string {
  const counts = Object.entries(PATCH_STATES)
    .map(([state, { label }]) => ({ label, count: [...reduction.patches].filter((p) => p === state).length }))
    .filter(({ count }) => count > 0)
    .map(({ label, count }) => `${count} ${label}`);
  return `${counts.join(', ')} of ${reduction.patches.length} patches`;
}

/** A CSS percentage of a fraction: 0.375 → "37.500%". */
function percent(fraction: number): string {
  return `${(100 * fraction).toFixed(3)}%`;
}
