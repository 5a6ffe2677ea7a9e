import { cosineToRow, l2Normalize, norm } from '../arrays';
import { ParamSpec } from '../method';
import { StageInput, spanTokens } from '../paradigm';
import { SiteView } from '../tokenState';

/** Parameters FiCoCo-V and FiCoCo-L share: the correlate's quantile rule and the compress. */
export const SHARED_FICOCO_PARAMS = {
  epsilon: {
    type: 'number',
    default: 0.998,
    min: 0.5,
    max: 1,
    description: "Row quantile ε that sets each source's receiver threshold (token-adaptive K).",
  },
  strictThreshold: {
    type: 'boolean',
    default: true,
    description: 'Receivers are strictly above the quantile (official code); off: at or above it (paper).',
  },
  sizeWeighted: {
    type: 'boolean',
    default: false,
    description:
      'Weight merges by token size m instead of the self-preserving 1 + Σα; in the vision tower later ' +
      'layers also add log m to attention (ToMe-style proportional attention).',
  },
} satisfies Record<string, ParamSpec>;

/** A FiCoCo side's `schedule` parameter; `official` names the list that is the official code's constant r. */
export function scheduleParam(official: string): Extract<ParamSpec, { type: 'list' }> {
  return {
    type: 'list',
    default: '',
    description:
      'Shares of the removal, one per layer from the first reducing one: as many layers reduce as it lists ' +
      `(3,2,1: three, half the removal in the first). Empty: even over every layer left. ${official}`,
  };
}

/** The site's head-averaged attention [count, keyCount]; FiCoCo always asks for it. */
export function requireAttention(view: SiteView): Float32Array {
  if (!view.attention) throw new Error(`FiCoCo needs the attention at ${view.site}`);
  return view.attention;
}

/**
 * FiCoCo-V's local penalty: in each full W×W window of the patch grid, the most redundant token's score s becomes s·c
 * (s > 0) or s/c (s < 0).
 */
export function localPenalty(
  scores: Float64Array,
  tokenPatch: Int32Array,
  grid: { rows: number; cols: number },
  window: number,
  factor: number,
): Float64Array {
  const boosted = scores.slice();
  const windowCols = Math.floor(grid.cols / window);
  const windowRows = Math.floor(grid.rows / window);
  const strongest = new Map<number, number>();
  for (let i = 0; i < scores.length; i++) {
    const patch = tokenPatch[i];
    if (patch < 0) continue;
    const windowRow = Math.floor(Math.floor(patch / grid.cols) / window);
    const windowCol = Math.floor((patch % grid.cols) / window);
    // A leftover row or column of an odd grid belongs to no full window.
    if (windowRow >= windowRows || windowCol >= windowCols) continue;
    const id = windowRow * windowCols + windowCol;
    const current = strongest.get(id);
    if (
      current === undefined ||
      scores[i] > scores[current] ||
      (scores[i] === scores[current] && patch < tokenPatch[current])
    )
      strongest.set(id, i);
  }
  for (const i of strongest.values()) boosted[i] = boosted[i] > 0 ? boosted[i] * factor : boosted[i] / factor;
  return boosted;
}

/**
 * FiCoCo without [CLS] (arXiv 2411.17686v4 Appendix 10.2): a^Eq_i = −cos(μ, k_i), μ the mean key of the span's
 * tokens.
 */
export function meanKeyTerm(input: StageInput<unknown>): Float64Array {
  const { view, span } = input;
  const keys = view.meanKeys;
  if (!keys) throw new Error(`FiCoCo's [CLS]-free variant needs the keys at ${view.site}`);
  const headDim = keys.length / view.keyCount;
  const tokens = spanTokens(span);
  const mean = new Float64Array(headDim);
  for (const t of tokens) for (let d = 0; d < headDim; d++) mean[d] += keys[t * headDim + d] / tokens.length;
  const meanNorm = norm(mean);
  const term = new Float64Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) term[i] = -cosineToRow(mean, meanNorm, keys, tokens[i]);
  return term;
}

/** s = w_a·â − w_b·b̂ over the span, each term optionally L2-normalised (official code). */
export function weightedDifference(
  first: Float64Array,
  second: Float64Array,
  { weightFirst, weightSecond, normalize }: { weightFirst: number; weightSecond: number; normalize: boolean },
): Float64Array {
  const a = normalize ? l2Normalize(first) : first;
  const b = normalize ? l2Normalize(second) : second;
  const scores = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) scores[i] = weightFirst * a[i] - weightSecond * b[i];
  return scores;
}
