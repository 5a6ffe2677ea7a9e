import { Compress, Correlate, SINK, oneReceiverEach } from '../paradigm';
import { SiteView, VisualSpan } from '../tokenState';

/** "Convergent" correlation (EViT): every source goes to the one new fused token of its span, weight 1. */
export const convergentCorrelation: Correlate<unknown> = (_input, split) =>
  oneReceiverEach(new Int32Array(split.sources.length).fill(SINK));

/** How much each source counts in its span's fused token (EViT: its [CLS] attention), by sequence index. */
export type FusionWeights = (view: SiteView) => (token: number) => number;

/**
 * Keeps the targets and appends one fused token at the end of each span that lost sources:
 * x_fused = Σ a_i x_i / Σ a_i (normalize) or Σ a_i x_i, size Σ m_i, holding every source's patches.
 */
export function fuseIntoSink(weightsOf: FusionWeights, { normalize }: { normalize: boolean }): Compress<unknown> {
  return (view, split) => {
    const weightOf = weightsOf(view);
    const leaving = new Uint8Array(view.count);
    for (const source of split.sources) leaving[source] = 1;
    const rows: { hidden: ArrayLike<number>; size: number; position: number }[] = [];
    const keep = (token: number) =>
      rows.push({
        hidden: view.hidden.subarray(token * view.width, (token + 1) * view.width),
        size: view.sizes[token],
        position: view.positions[token],
      });
    const spans: VisualSpan[] = [];
    let next = 0;
    for (const span of view.spans) {
      for (; next < span.start; next++) keep(next);
      const start = rows.length;
      const newIndex = new Map<number, number>();
      const tokenPatch: number[] = [];
      const sources: number[] = [];
      for (let t = span.start; t < span.start + span.count; t++) {
        if (leaving[t]) {
          sources.push(t);
          continue;
        }
        newIndex.set(t, rows.length);
        tokenPatch.push(span.tokenPatch[t - span.start]);
        keep(t);
      }
      const fusedIndex = rows.length;
      if (sources.length > 0) {
        // Placed last in its span with the span's last position: positions never decrease (CLIP ignores them).
        rows.push({
          hidden: fusedHidden(view, sources, weightOf, normalize),
          size: sources.reduce((m, s) => m + view.sizes[s], 0),
          position: view.positions[span.start + span.count - 1],
        });
        tokenPatch.push(-1);
      }
      const patchOwner = span.patchOwner.map((owner) =>
        owner < 0 ? -1 : leaving[owner] ? fusedIndex : (newIndex.get(owner) ?? -1),
      );
      spans.push({
        start,
        count: rows.length - start,
        grid: span.grid,
        patchOwner,
        tokenPatch: Int32Array.from(tokenPatch),
      });
      next = span.start + span.count;
    }
    for (; next < view.count; next++) keep(next);
    const hidden = new Float32Array(rows.length * view.width);
    rows.forEach((r, i) => hidden.set(r.hidden, i * view.width));
    return {
      hidden,
      count: rows.length,
      width: view.width,
      sizes: Float32Array.from(rows, (r) => r.size),
      positions: Int32Array.from(rows, (r) => r.position),
      spans,
    };
  };
}

/** Σ a_i x_i / Σ a_i (normalize; the plain mean when every a_i is 0) or Σ a_i x_i. */
function fusedHidden(
  view: SiteView,
  sources: number[],
  weightOf: (token: number) => number,
  normalize: boolean,
): Float64Array {
  const sum = new Float64Array(view.width);
  let totalWeight = 0;
  for (const source of sources) {
    const weight = weightOf(source);
    for (let d = 0; d < view.width; d++) sum[d] += weight * view.hidden[source * view.width + d];
    totalWeight += weight;
  }
  if (!normalize) return sum;
  if (totalWeight > 0) return sum.map((v) => v / totalWeight);
  const mean = new Float64Array(view.width);
  for (const source of sources)
    for (let d = 0; d < view.width; d++) mean[d] += view.hidden[source * view.width + d] / sources.length;
  return mean;
}
