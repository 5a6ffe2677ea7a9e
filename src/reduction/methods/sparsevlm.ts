import { ParamSpec, ParamsOf, defineMethod, geometricRemovals } from '../method';
import { Correlate, Filter, SINK, Step, StageInput, spanTokens, splitByScore } from '../paradigm';
import { allTokens, attentionFrom, leastImportantFirst, textAfter } from '../stages/decoderSignals';
import { hiddenNorms, recycleIntoNewTokens } from '../stages/recycle';
import { removalsAtLayers } from '../stages/schedule';

/** SparseVLM's pruning layers in LLaVA-1.5 (0-based layers 2, 6, 15 of Vicuna-7B's 32). */
const LAYER_FRACTIONS = [2 / 32, 6 / 32, 15 / 32];

const PARAMS = {
  recycleShare: {
    type: 'number',
    default: 0.3,
    min: 0,
    max: 1,
    description:
      "Share of each step's pruned tokens (the most attended ones) recycled into new tokens: " +
      '⌊share·pruned⌋ + 1 (code: 30 %).',
  },
  clusterRatio: {
    type: 'number',
    default: 0.1,
    min: 0,
    max: 1,
    description: 'New tokens per recycled token: ⌊ratio·recycled⌋ + 1 clusters (code: 1 per 10).',
  },
} satisfies Record<string, ParamSpec>;

type SparsevlmParams = ParamsOf<typeof PARAMS>;

/** Recycled tokens out of `pruned`: ⌊share·pruned⌋ + 1, none when nothing is pruned. */
export function recycledCount(pruned: number, share: number): number {
  return pruned === 0 ? 0 : Math.min(pruned, Math.floor(share * pruned) + 1);
}

/** New tokens built from `recycled`: ⌊ratio·recycled⌋ + 1, none when nothing is recycled. */
export function clusterCount(recycled: number, ratio: number): number {
  return recycled === 0 ? 0 : Math.min(recycled, Math.floor(ratio * recycled) + 1);
}

/** New tokens a step adds when it prunes `pruned` tokens. */
function addedTokens(pruned: number, params: SparsevlmParams): number {
  return clusterCount(recycledCount(pruned, params.recycleShare), params.clusterRatio);
}

/** Smallest p ≤ n − 1 with p − added(p) = net (net removal exact); without one, p = net and nothing is recycled. */
export function prunedForNetRemoval(net: number, spanCount: number, params: SparsevlmParams): number {
  for (let pruned = net; pruned < spanCount; pruned++) if (pruned - addedTokens(pruned, params) === net) return pruned;
  return net;
}

/**
 * Raters = text tokens j after the image with r_j > mean r, r_j = mean_i softmax_j(h_i·h_j) over the span's tokens i
 * (SparseVLM §3.2, as the code: no 1/√D), h_i·h_j = ‖h_i‖‖h_j‖cos_ij with cos from the engine.
 */
export function selectRaters(input: StageInput<unknown>): Int32Array {
  const { view, span } = input;
  const text = textAfter(view, span);
  if (text.length === 0) return allTokens(view);
  const cosine = view.hiddenCosine;
  if (!cosine) throw new Error(`SparseVLM needs the hidden cosine at ${view.site}`);
  const textNorms = hiddenNorms(view, text);
  const imageNorms = hiddenNorms(view, spanTokens(span));
  const logits = new Float64Array(text.length);
  const relevance = new Float64Array(text.length);
  for (let i = 0; i < span.count; i++) {
    const row = (span.start + i) * view.count;
    let max = -Infinity;
    for (let k = 0; k < text.length; k++)
      max = Math.max(max, (logits[k] = imageNorms[i] * textNorms[k] * cosine[row + text[k]]));
    let total = 0;
    for (let k = 0; k < text.length; k++) total += logits[k] = Math.exp(logits[k] - max);
    for (let k = 0; k < text.length; k++) relevance[k] += logits[k] / total / span.count;
  }
  let mean = 0;
  for (let k = 0; k < text.length; k++) mean += relevance[k];
  mean /= text.length;
  const raters = text.filter((_, k) => relevance[k] > mean);
  return raters.length > 0 ? raters : text;
}

/**
 * a_i = mean over raters r of A[r, i]; the least rated leave, p of them so that p − new tokens = the step's net
 * removal.
 */
const raterFilter: Filter<SparsevlmParams> = (input) => {
  const importance = attentionFrom(input, 'SparseVLM', selectRaters(input));
  return splitByScore(
    input.span,
    leastImportantFirst(importance),
    prunedForNetRemoval(input.remove, input.span.count, input.params),
  );
};

/** The most rated ⌊share·p⌋ + 1 of the pruned go to new tokens (SINK, weight 1), the rest are dropped. */
const recycleMostRated: Correlate<SparsevlmParams> = (input, split) => {
  const { sources } = split;
  const pruned = sources.length;
  const recycles = pruned - addedTokens(pruned, input.params) === input.remove;
  const recycledTotal = recycles ? recycledCount(pruned, input.params.recycleShare) : 0;
  const scores = split.scores ?? new Float32Array(input.span.count);
  const scoreOf = (k: number) => scores[sources[k] - input.span.start];
  const byRating = Int32Array.from(sources.keys()).sort((a, b) => scoreOf(a) - scoreOf(b) || a - b);
  const recycled = new Uint8Array(pruned);
  for (let r = 0; r < recycledTotal; r++) recycled[byRating[r]] = 1;
  const offsets = new Int32Array(pruned + 1);
  for (let k = 0; k < pruned; k++) offsets[k + 1] = offsets[k] + recycled[k];
  return {
    offsets,
    receivers: new Int32Array(recycledTotal).fill(SINK),
    weights: new Float32Array(recycledTotal).fill(1),
  };
};

export const sparsevlm = defineMethod({
  name: 'sparsevlm',
  description:
    'SparseVLM: text raters score the image tokens at a few decoder layers; the least rated are pruned ' +
    'and the best of those recycled into a few merged tokens.',
  reference:
    "SparseVLM (Zhang et al., ICML'25, arXiv 2410.04417) and Gumpest/SparseVLMs: prune after layers 2, " +
    '6, 15 of 32 (fractions 2/32, 6/32, 15/32); raters = question tokens with above-mean relevance ' +
    "(h_i·h_j = ‖h_i‖‖h_j‖cos_ij, cos from the engine's hidden cosine matrix); image tokens scored by " +
    "the raters' mean attention; " +
    'of the pruned, the top 30 % by score (+1) are clustered by DPC-kNN on hidden states (distances from ' +
    "the engine's cosine and the states' norms) into ⌊n/10⌋+1 tokens (plain means) appended to the " +
    'image. ' +
    "Departures: the paper sets each layer's kept count from the rank of the rater×image attention " +
    '(kept = rank·scale + bias) and the code hard-codes counts per budget (e.g. 576→303→110→36 plus ' +
    'recycled tokens for "128", an average over layers); ' +
    'we take geometric NET removals so the last step keeps exactly the budget, recycled tokens counting ' +
    "toward it. Raters are re-selected at each step from the site's hidden states (the code selects " +
    'once from the input embeddings, not visible at a decoder site); ' +
    "without text after the image the whole sequence rates (FastV's score). Recycled tokens are built " +
    "from hidden states after the layer's attention (the code: after its MLP) and sit at their latest " +
    "member's position, in position order, so kept positions stay original and increasing (the code " +
    'appends them and renumbers). No random density jitter: ties go to the earlier token.',
  params: PARAMS,
  plan(model, keep, params) {
    const removals = geometricRemovals(model.visualTokens, keep, LAYER_FRACTIONS.length);
    return removalsAtLayers(LAYER_FRACTIONS, 0, model.textLayers, removals).map(
      ({ layer, remove }): Step<SparsevlmParams> => ({
        site: `llm:${layer}`,
        needs: { attention: 'probs', hiddenCosine: true },
        filter: raterFilter,
        correlate: recycleMostRated,
        compress: recycleIntoNewTokens((recycled) => clusterCount(recycled, params.clusterRatio)),
        remove,
        params,
      }),
    );
  },
});
