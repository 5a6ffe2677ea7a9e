import { Compress, Correlation, Split } from '../paradigm';
import { SiteView, TokenState, selectTokens } from '../tokenState';

/** Pruning: the sources leave, nothing is folded in. */
export const dropSources: Compress<unknown> = (view, split) => selectTokens(view, keptIndices(view, split));

export interface MergeOptions {
  /**
   * 'self-preserving': X_j ← (X_j + Σα_ij X_i)/(1 + Σα_ij) (FiCoCo); 'size': (m_j X_j + Σα_ij m_i X_i)/(m_j + Σα_ij
   * m_i) (ToMe);
   * per-token weights w from the site: (w_j X_j + Σα_ij w_i X_i)/(w_j + Σα_ij w_i) (PruMerge's attention weighting)
   */
  weighting: 'self-preserving' | 'size' | { tokenWeights: (view: SiteView) => ArrayLike<number> };
  /** false: X_j ← X_j + Σα_ij X_i, the official FiCoCo-L code's unnormalised sum */
  normalize: boolean;
}

/**
 * Folds every source into its receivers; sizes add up (m_j ← m_j + Σα_ij m_i) and each source's patches go to its
 * strongest receiver among the image's tokens (dropped where it has none there).
 */
export function mergeIntoReceivers(options: MergeOptions): Compress<unknown> {
  return (view, split, correlation) => {
    const kept = keptIndices(view, split);
    const state = selectTokens(view, kept);
    const newIndex = indexMap(view.count, kept);
    const { weighting, normalize } = options;
    const tokenWeights =
      weighting === 'size' ? view.sizes : weighting === 'self-preserving' ? undefined : weighting.tokenWeights(view);
    const { sources } = split;
    const { offsets, receivers, weights } = correlation;
    const { width, sizes } = view;
    const input = view.hidden;
    const output = state.hidden;
    // First pass: each receiver's total weight W_j = w_j + Σ α_ij u_i (by new index), and each source's strongest
    // receiver.
    const totalWeight = new Float64Array(state.count);
    const touched = new Uint8Array(state.count);
    const receiverOf = new Int32Array(view.count).fill(-1);
    // A receiver outside the images (FiCoCo-V's [CLS], where asked for) takes its share but holds no patch.
    const imageToken = new Uint8Array(view.count);
    for (const span of view.spans) imageToken.fill(1, span.start, span.start + span.count);
    for (let k = 0; k < sources.length; k++) {
      const source = sources[k];
      const sourceWeight = tokenWeights ? tokenWeights[source] : 1;
      let strongest = -1;
      for (let e = offsets[k]; e < offsets[k + 1]; e++) {
        const receiver = receivers[e];
        const n = newIndex[receiver];
        if (!touched[n]) {
          touched[n] = 1;
          totalWeight[n] = tokenWeights ? tokenWeights[receiver] : 1;
        }
        totalWeight[n] += weights[e] * sourceWeight;
        state.sizes[n] += weights[e] * sizes[source];
        if (imageToken[receiver] && (strongest < 0 || weights[e] > weights[strongest])) strongest = e;
      }
      if (strongest >= 0) receiverOf[source] = receivers[strongest];
    }
    // Second pass, in place on the kept rows: X_j ← (w_j X_j + Σ α_ij u_i X_i) / W_j (or X_j + Σ α_ij X_i
    // unnormalised).
    // All weights zero (attention underflow) leaves the receiver as it was.
    if (normalize) {
      for (let n = 0; n < state.count; n++) {
        if (!touched[n] || totalWeight[n] === 0) continue;
        const scale = (tokenWeights ? tokenWeights[kept[n]] : 1) / totalWeight[n];
        for (let d = n * width, end = d + width; d < end; d++) output[d] *= scale;
      }
    }
    for (let k = 0; k < sources.length; k++) {
      const source = sources[k];
      const sourceWeight = tokenWeights ? tokenWeights[source] : 1;
      const from = source * width;
      for (let e = offsets[k]; e < offsets[k + 1]; e++) {
        const n = newIndex[receivers[e]];
        const total = totalWeight[n];
        if (normalize && total === 0) continue;
        const share = (weights[e] * sourceWeight) / (normalize ? total : sourceWeight);
        const to = n * width;
        for (let d = 0; d < width; d++) output[to + d] += share * input[from + d];
      }
    }
    return { ...state, spans: reassignPatches(view, state, newIndex, receiverOf) };
  };
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

/**
 * Provenance after a merge: a patch held by a source moves to that source's strongest receiver (receiverOf by sequence
 * index, −1 for none).
 */
export function reassignPatches(
  view: TokenState,
  state: TokenState,
  newIndex: Int32Array,
  receiverOf: Int32Array,
): TokenState['spans'] {
  return state.spans.map((span, s) => ({
    ...span,
    patchOwner: view.spans[s].patchOwner.map((owner) =>
      owner < 0 ? -1 : newIndex[receiverOf[owner] >= 0 ? receiverOf[owner] : owner],
    ),
  }));
}

/** Checks the invariants every correlation must satisfy (for tests). */
export function correlationProblems(
  split: Split,
  correlation: Correlation,
  /** tokens besides the targets a method may send to (FiCoCo-V's [CLS], where asked for) */
  alsoReceiving: readonly number[] = [],
): string[] {
  const problems: string[] = [];
  const targets = new Set(split.targets);
  for (let k = 0; k < split.sources.length; k++) {
    let total = 0;
    for (let e = correlation.offsets[k]; e < correlation.offsets[k + 1]; e++) {
      const receiver = correlation.receivers[e];
      if (receiver >= 0 && !targets.has(receiver) && !alsoReceiving.includes(receiver))
        problems.push(`source ${split.sources[k]} sends to ${receiver}, not a target`);
      if (correlation.weights[e] < 0) problems.push(`negative weight for source ${split.sources[k]}`);
      total += correlation.weights[e];
    }
    if (correlation.offsets[k + 1] > correlation.offsets[k] && Math.abs(total - 1) > 1e-5)
      problems.push(`weights of source ${split.sources[k]} sum to ${total}`);
  }
  return problems;
}
