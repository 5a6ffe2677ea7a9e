import { row } from '../arrays';
import { Compress } from '../paradigm';
import { SiteView, selectTokens } from '../tokenState';
import { indexMap, keptIndices, reassignPatches } from './compress';

/**
 * Importance-weighted merge (PruMerge): X_j ← (w_j X_j + Σ α_ij w_i X_i) / (w_j + Σ α_ij w_i) with per-token
 * weights w from the site; sizes add up (m_j ← m_j + Σ α_ij m_i) and each source's patches go to its
 * strongest receiver, as in mergeIntoReceivers.
 */
export function mergeWeightedBy(weightsOf: (view: SiteView) => ArrayLike<number>): Compress<unknown> {
  return (view, split, correlation) => {
    const weight = weightsOf(view);
    const kept = keptIndices(view, split);
    const state = selectTokens(view, kept);
    const newIndex = indexMap(view.count, kept);
    const { width } = view;
    const merged = new Map<number, { sum: Float64Array; total: number }>();
    const receiverOf = new Map<number, number>();
    split.sources.forEach((source, k) => {
      let strongest = -1;
      for (let e = correlation.offsets[k]; e < correlation.offsets[k + 1]; e++) {
        const receiver = correlation.receivers[e];
        const alpha = correlation.weights[e];
        const entry = merged.get(receiver) ?? { sum: Float64Array.from(row(view.hidden, width, receiver), (v) => weight[receiver] * v), total: weight[receiver] };
        merged.set(receiver, entry);
        const sourceWeight = alpha * weight[source];
        for (let d = 0, from = source * width; d < width; d++) entry.sum[d] += sourceWeight * view.hidden[from + d];
        entry.total += sourceWeight;
        state.sizes[newIndex[receiver]] += alpha * view.sizes[source];
        if (strongest < 0 || alpha > correlation.weights[strongest]) strongest = e;
      }
      if (strongest >= 0) receiverOf.set(source, correlation.receivers[strongest]);
    });
    // All weights zero (attention underflow) leaves the receiver as it was.
    for (const [receiver, { sum, total }] of merged) if (total > 0) state.hidden.set(sum.map((v) => v / total), newIndex[receiver] * width);
    return { ...state, spans: reassignPatches(view, state, newIndex, receiverOf) };
  };
}
