/**
 * Structure tokens (a tiled image's row ends) sit inside an image's span but are no image content: a decoder-side
 * reduction must neither drop nor merge them. Before a hook they are taken out of its view — their rows, and their
 * columns of every signal (unless the signals were gathered over the content only) — so the method sees content only;
 * after it they go back between the tokens it kept, by position (kept tokens keep their positions, which never
 * decrease along the sequence).
 */
import { selectRows, submatrix } from '../reduction/arrays';
import { SiteView, TokenState, VisualSpan, selectTokens } from '../reduction/tokenState';

export interface WithoutStructure {
  view: SiteView;
  /** the hook's output with the structure tokens back in place, and which tokens are structure now */
  restore(reduced: TokenState): { state: TokenState; structure: Uint8Array };
}

/** `signalsOverContent`: the view's signals were gathered over the content tokens already (the engine's decoder hooks). */
export function withoutStructure(
  view: SiteView,
  structure: Uint8Array,
  { signalsOverContent = false } = {},
): WithoutStructure {
  const content = contentTokens(structure);
  const selected = selectTokens(view, content);
  const withSignals = (signals: Partial<SiteView>): WithoutStructure => ({
    view: { ...view, ...selected, ...signals, keyCount: content.length },
    restore: (reduced) => restore(view, structure, reduced),
  });
  if (signalsOverContent) return withSignals({});
  if (view.keyCount !== view.count)
    throw new Error(`structure tokens need the layer's keys to be its tokens (${view.keyCount} keys, ${view.count})`);
  return withSignals({
    attention: view.attention && submatrix(view.attention, view.count, content),
    hiddenCosine: view.hiddenCosine && submatrix(view.hiddenCosine, view.count, content),
    keyCosine: view.keyCosine && submatrix(view.keyCosine, view.count, content),
    meanKeys: view.meanKeys && selectRows(view.meanKeys, view.meanKeys.length / view.count, content),
  });
}

/** The indices of the tokens that are not structure, ascending. */
export function contentTokens(structure: Uint8Array): Int32Array {
  return Int32Array.from(Array.from({ length: structure.length }, (_, i) => i).filter((i) => structure[i] === 0));
}

/** The reduced content with the view's structure tokens merged back in by position, spans widened to hold them. */
function restore(
  view: SiteView,
  structure: Uint8Array,
  reduced: TokenState,
): { state: TokenState; structure: Uint8Array } {
  const marks = Array.from({ length: view.count }, (_, i) => i).filter((i) => structure[i] === 1);
  const count = reduced.count + marks.length;
  const { width } = view;
  const state: TokenState = {
    hidden: new Float32Array(count * width),
    count,
    width,
    sizes: new Float32Array(count),
    positions: new Int32Array(count),
    spans: [],
  };
  const isStructure = new Uint8Array(count);
  const fromReduced = new Int32Array(reduced.count);
  const fromView = new Map<number, number>();
  let out = 0;
  let next = 0;
  const put = (source: TokenState, index: number) => {
    state.hidden.set(source.hidden.subarray(index * width, (index + 1) * width), out * width);
    state.sizes[out] = source.sizes[index];
    state.positions[out] = source.positions[index];
    return out++;
  };
  for (let t = 0; t <= reduced.count; t++) {
    while (next < marks.length && (t === reduced.count || view.positions[marks[next]] < reduced.positions[t])) {
      fromView.set(marks[next], out);
      isStructure[out] = 1;
      put(view, marks[next++]);
    }
    if (t < reduced.count) fromReduced[t] = put(reduced, t);
  }
  state.spans = reduced.spans.map((span, s) => widened(span, view.spans[s], fromReduced, fromView));
  return { state, structure: isStructure };
}

/** A reduced span in the restored sequence: from its first to its last token, the structure it held included. */
function widened(
  span: VisualSpan,
  before: VisualSpan,
  fromReduced: Int32Array,
  fromView: Map<number, number>,
): VisualSpan {
  const inside = [fromReduced[span.start], fromReduced[span.start + span.count - 1]];
  for (const [viewIndex, index] of fromView)
    if (viewIndex >= before.start && viewIndex < before.start + before.count) inside.push(index);
  const start = Math.min(...inside);
  const end = Math.max(...inside) + 1;
  const tokenPatch = new Int32Array(end - start).fill(-1);
  for (let t = 0; t < span.count; t++) tokenPatch[fromReduced[span.start + t] - start] = span.tokenPatch[t];
  return {
    start,
    count: end - start,
    grid: span.grid,
    patchOwner: span.patchOwner.map((owner) => (owner < 0 ? -1 : fromReduced[owner])),
    tokenPatch,
  };
}
