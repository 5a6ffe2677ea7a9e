import { Compress, Correlation, Split } from '../paradigm';
import { SiteView, TokenState, selectTokens } from '../tokenState';

/** Pruning: the sources leave, nothing is folded in. */
export const dropSources: Compress<unknown> = (view, split) => selectTokens(view, keptIndices(view, split));

export interface MergeOptions {
  /** 'self-preserving': X_j ← (X_j + Σα_ij X_i)/(1 + Σα_ij) (FiCoCo); 'size': (m_j X_j + Σα_ij m_i X_i)/(m_j + Σα_ij m_i) (ToMe) */
  weighting: 'self-preserving' | 'size';
  /** false: X_j ← X_j + Σα_ij X_i, the official FiCoCo-L code's unnormalised sum */
  normalize: boolean;
}

/** Folds every source into its receivers; sizes add up (m_j ← m_j + Σα_ij m_i) and each source's patches go to its strongest receiver. */
export function mergeIntoReceivers(options: MergeOptions): Compress<unknown> {
  return (view, split, correlation) => {
    const kept = keptIndices(view, split);
    const state = selectTokens(view, kept);
    const newIndex = indexMap(view.count, kept);
    const { width } = view;
    const merged = new Map<number, { sum: Float64Array; weight: number }>();
    const receiverOf = new Map<number, number>();
    split.sources.forEach((source, k) => {
      let strongest = -1;
      for (let e = correlation.offsets[k]; e < correlation.offsets[k + 1]; e++) {
        const receiver = correlation.receivers[e];
        const alpha = correlation.weights[e];
        const entry = merged.get(receiver) ?? startMerge(view, receiver, options);
        merged.set(receiver, entry);
        const sourceWeight = alpha * (options.weighting === 'size' ? view.sizes[source] : 1);
        const x = view.hidden.subarray(source * width, (source + 1) * width);
        for (let d = 0; d < width; d++) entry.sum[d] += sourceWeight * x[d];
        entry.weight += sourceWeight;
        state.sizes[newIndex[receiver]] += alpha * view.sizes[source];
        if (strongest < 0 || alpha > correlation.weights[strongest]) strongest = e;
      }
      if (strongest >= 0) receiverOf.set(source, correlation.receivers[strongest]);
    });
    for (const [receiver, { sum, weight }] of merged) {
      const target = newIndex[receiver] * width;
      for (let d = 0; d < width; d++) state.hidden[target + d] = options.normalize ? sum[d] / weight : sum[d];
    }
    return { ...state, spans: reassignPatches(view, state, newIndex, receiverOf) };
  };
}

function startMerge(view: SiteView, receiver: number, options: MergeOptions): { sum: Float64Array; weight: number } {
  const selfWeight = options.weighting === 'size' ? view.sizes[receiver] : 1;
  const x = view.hidden.subarray(receiver * view.width, (receiver + 1) * view.width);
  // The unnormalised sum keeps X_j itself at weight 1.
  const scale = options.normalize ? selfWeight : 1;
  return { sum: Float64Array.from(x, (v) => scale * v), weight: selfWeight };
}

/** Every token that is not a source, ascending. */
export function keptIndices(view: { count: number }, split: Split): Int32Array {
  const leaving = new Uint8Array(view.count);
  for (const s of split.sources) leaving[s] = 1;
  const kept: number[] = [];
  for (let i = 0; i < view.count; i++) if (!leaving[i]) kept.push(i);
  return Int32Array.from(kept);
}

/** old sequence index → new index (−1 for tokens that left). */
export function indexMap(count: number, kept: ArrayLike<number>): Int32Array {
  const map = new Int32Array(count).fill(-1);
  for (let n = 0; n < kept.length; n++) map[kept[n]] = n;
  return map;
}

/** Provenance after a merge: a patch held by a source moves to that source's strongest receiver. */
export function reassignPatches(view: TokenState, state: TokenState, newIndex: Int32Array, receiverOf: ReadonlyMap<number, number>): TokenState['spans'] {
  return state.spans.map((span, s) => ({
    ...span,
    patchOwner: view.spans[s].patchOwner.map((owner) => {
      if (owner < 0) return -1;
      const holder = receiverOf.get(owner) ?? owner;
      return newIndex[holder];
    }),
  }));
}

/** Checks the invariants every correlation must satisfy; used by tests and `ficoco reduce`. */
export function correlationProblems(split: Split, correlation: Correlation): string[] {
  const problems: string[] = [];
  const targets = new Set(split.targets);
  for (let k = 0; k < split.sources.length; k++) {
    let total = 0;
    for (let e = correlation.offsets[k]; e < correlation.offsets[k + 1]; e++) {
      if (correlation.receivers[e] >= 0 && !targets.has(correlation.receivers[e])) problems.push(`source ${split.sources[k]} sends to ${correlation.receivers[e]}, not a target`);
      if (correlation.weights[e] < 0) problems.push(`negative weight for source ${split.sources[k]}`);
      total += correlation.weights[e];
    }
    if (correlation.offsets[k + 1] > correlation.offsets[k] && Math.abs(total - 1) > 1e-5) problems.push(`weights of source ${split.sources[k]} sum to ${total}`);
  }
  return problems;
}
