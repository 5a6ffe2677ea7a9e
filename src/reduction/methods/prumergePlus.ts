import { quantileLinear, topIndices } from '../arrays';
import { ParamSpec, ParamsOf, defineMethod } from '../method';
import { Correlate, Filter, splitByKept } from '../paradigm';
import { mergeIntoReceivers } from '../stages/compress';
import { classAttention, classAttentionBySequence } from '../stages/importance';
import { argmaxStrided, keyCosines } from '../stages/similarity';

const PARAMS = {
  neighbours: {
    type: 'integer',
    default: 32,
    min: 1,
    max: 4096,
    description: 'k: each kept token gathers its k most similar pruned tokens by key cosine (official code: 32).',
  },
} satisfies Record<string, ParamSpec>;

type PruMergePlusParams = ParamsOf<typeof PARAMS>;

/** IQR outliers, highest first: {i : a_i > Q3 + 1.5·(Q3 − Q1)}, quartiles interpolated linearly (numpy). */
function iqrOutliers(scores: Float64Array): number[] {
  const q1 = quantileLinear(scores, 0.25);
  const q3 = quantileLinear(scores, 0.75);
  const bound = q3 + 1.5 * (q3 - q1);
  return topIndices(scores, scores.length).filter((i) => scores[i] > bound);
}

/** PruMerge+'s spatial samples 0, s, 2s, … < n with s = ⌊⌊n/m⌋/3⌋ for m outliers (⌊n/B⌋ when there are none). */
function spatialSamples(count: number, outliers: number, keep: number): number[] {
  const stride = Math.max(1, outliers > 0 ? Math.floor(Math.floor(count / outliers) / 3) : Math.floor(count / keep));
  return Array.from({ length: Math.ceil(count / stride) }, (_, i) => i * stride);
}

/** `room` of the candidates, evenly spread over them: c[⌊(t + ½)·len/room⌋]. */
function evenlyThinned(candidates: number[], room: number): number[] {
  if (candidates.length <= room) return candidates;
  return Array.from({ length: room }, (_, t) => candidates[Math.floor(((t + 0.5) * candidates.length) / room)]);
}

/**
 * Kept = IQR outliers of [CLS] attention (highest first, at most B), then spatial samples, then the highest remaining
 * attention, until exactly B.
 */
const outlierAndSpatialFilter: Filter<PruMergePlusParams> = ({ view, span, remove }) => {
  const keep = span.count - remove;
  const attention = classAttention(view, span);
  const outliers = iqrOutliers(attention);
  const kept = new Set(outliers.slice(0, keep));
  const samples = spatialSamples(span.count, outliers.length, keep).filter((i) => !kept.has(i));
  for (const i of evenlyThinned(samples, keep - kept.size)) kept.add(i);
  for (const i of topIndices(attention, span.count)) if (kept.size < keep) kept.add(i);
  return splitByKept(span, kept);
};

/**
 * The `k` largest of values[from + c·stride] over the candidates c (ascending), best first, ties to the earlier
 * candidate:
 * the order of a sort by (value descending, index ascending), cut at k.
 */
function largestFirst(
  values: Float32Array,
  from: number,
  stride: number,
  candidates: ArrayLike<number>,
  k: number,
): number[] {
  const best: number[] = [];
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i];
    const value = values[from + c * stride];
    if (best.length === k) {
      if (!(value > values[from + best[k - 1] * stride])) continue;
      best.pop();
    }
    let at = best.length;
    while (at > 0 && value > values[from + best[at - 1] * stride]) at--;
    best.splice(at, 0, c);
  }
  return best;
}

/**
 * Each kept token picks its k most similar pruned tokens (key cosine). A pruned token picked by several
 * kept tokens splits its weight equally among them, most similar first; one picked by none goes to its
 * most similar kept token.
 */
const nearestNeighbourReceivers: Correlate<PruMergePlusParams> = ({ view, params }, split) => {
  const { sources, targets } = split;
  // C[t, k] = cos(k̄_target, k̄_source)
  const similarity = keyCosines(view, targets, sources);
  const pickedBy: number[][] = Array.from(sources, () => []);
  const everySource = Int32Array.from({ length: sources.length }, (_, k) => k);
  for (let t = 0; t < targets.length; t++)
    for (const k of largestFirst(similarity, t * sources.length, 1, everySource, params.neighbours))
      pickedBy[k].push(t);
  const offsets = new Int32Array(sources.length + 1);
  const receivers: number[] = [];
  const weights: number[] = [];
  pickedBy.forEach((picked, k) => {
    const chosen =
      picked.length > 0
        ? largestFirst(similarity, k, sources.length, picked, picked.length)
        : [argmaxStrided(similarity, k, sources.length, targets.length)];
    for (const t of chosen) {
      receivers.push(targets[t]);
      weights.push(1 / chosen.length);
    }
    offsets[k + 1] = receivers.length;
  });
  return { offsets, receivers: Int32Array.from(receivers), weights: Float32Array.from(weights) };
};

export const pruMergePlus = defineMethod({
  name: 'prumerge-plus',
  description:
    'PruMerge+: keep [CLS]-attention outliers plus spatially uniform samples, and merge each pruned ' +
    'token into its nearest kept tokens by key similarity, weighted by attention.',
  reference:
    'LLaVA-PruMerge (ICCV 2025, arXiv 2403.15388), the "+" variant (official code ' +
    '42Shawn/LLaVA-PruMerge, token_prune_merge_advanced_plus). ' +
    "The paper's count is adaptive (IQR outliers of [CLS] attention, plus samples at stride ⌊⌊n/m⌋/3⌋); " +
    'here the user budget B is exact: outliers first (highest attention first if more than B), then the ' +
    'spatial samples evenly thinned to the room left, then the highest remaining attention. ' +
    'Merge as the paper describes, an attention-weighted average (a_j x_j + Σ α_ij a_i x_i)/(a_j + Σ ' +
    'α_ij a_i), where the code adds the unnormalised Σ a_i x_i to x_j. ' +
    'k = 32 nearest pruned tokens per kept token (the code searches all other tokens, kept ones ' +
    'included; kept tokens are not sources here). ' +
    "To keep provenance exact each pruned token's weight sums to 1: split equally over the kept tokens " +
    'that picked it, or, picked by none, to its most similar kept token (the code folds every pruned ' +
    'token into one extra attention-weighted token, which a fixed budget has no room for). ' +
    'Uses the head-averaged attention and keys of the layer producing the features (the code recomputes ' +
    "single-head attention from the last layer's q/k projections). Without [CLS], the mean attention " +
    'each token receives replaces it. On a tiled image the passes are ranked together by it, each keeping what it ' +
    'wins; outliers and samples are chosen per pass.',
  params: PARAMS,
  plan(model, keep, params) {
    return [
      {
        site: 'features',
        needs: { attention: 'probs', keyCosine: true },
        filter: outlierAndSpatialFilter,
        correlate: nearestNeighbourReceivers,
        compress: mergeIntoReceivers({ weighting: { tokenWeights: classAttentionBySequence }, normalize: true }),
        remove: model.visualTokens - keep,
        rank: classAttention,
        params,
      },
    ];
  },
});
