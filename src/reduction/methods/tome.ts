import { ParamSpec, ParamsOf, defineMethod, layerAt, layerRange } from '../method';
import { Correlate, Filter, Step, oneReceiverEach, splitByScore } from '../paradigm';
import { mergeIntoReceivers } from '../stages/compress';
import { argmaxStrided, keyCosines } from '../stages/similarity';
import { SiteView, VisualSpan } from '../tokenState';

const PARAMS = {
  start: {
    type: 'number',
    default: 0,
    min: 0,
    max: 1,
    description: 'First merging vision layer as a fraction of the layers that run (0: every layer, as ToMe).',
  },
  proportionalAttention: {
    type: 'boolean',
    default: true,
    description: "Vision attention adds log(size) of each key to its logits (ToMe's proportional attention).",
  },
} satisfies Record<string, ParamSpec>;

type TomeParams = ParamsOf<typeof PARAMS>;

/**
 * Removals per layer, as even as possible (earlier layers take the extra one) while no layer merges
 * more than half its tokens (ToMe's r ≤ ⌊N/2⌋, i.e. r ≤ the tokens left after it); the first layer
 * takes whatever the later ones cannot.
 */
export function halvingRemovals(start: number, keep: number, steps: number): number[] {
  const removals = new Array<number>(steps).fill(0);
  let remaining = start - keep;
  let after = keep;
  for (let i = steps - 1; i > 0; i--) {
    removals[i] = Math.min(after, Math.floor(remaining / (i + 1)));
    remaining -= removals[i];
    after += removals[i];
  }
  if (steps > 0) removals[0] = remaining;
  return removals;
}

/** B = tokens with (sequence index + 1) mod k = 0, A = the rest of the span; count of B. */
function receiverCount(span: VisualSpan, stride: number): number {
  const end = span.start + span.count;
  return Math.floor(end / stride) - Math.floor(span.start / stride);
}

/**
 * The stride k of the bipartite split: 2 is ToMe's alternation (A = even, B = odd sequence indices, so
 * [CLS] at 0 would be in A and is never a candidate); a larger k (ToMe's kth_bipartite_soft_matching)
 * only when r exceeds |A|, so a step can always remove r and keep B non-empty.
 */
export function receiverStride(span: VisualSpan, remove: number): number {
  let stride = 2;
  while (span.count - receiverCount(span, stride) < remove || receiverCount(span, stride) < 1) stride++;
  return stride;
}

const isReceiver = (token: number, stride: number) => (token + 1) % stride === 0;

/** Span offsets of B, the receivers: (sequence index + 1) mod k = 0. */
function receiverOffsets(span: VisualSpan, stride: number): Int32Array {
  const offsets: number[] = [];
  for (let offset = 0; offset < span.count; offset++) if (isReceiver(span.start + offset, stride)) offsets.push(offset);
  return Int32Array.from(offsets);
}

/**
 * For each query (span offset): argmax_{b∈B} cos(k̄_a, k̄_b), ties to the earlier b, as the receiver's span offset and
 * the similarity.
 */
function bestReceivers(
  view: SiteView,
  span: VisualSpan,
  queries: ArrayLike<number>,
  receivers: Int32Array,
): { offset: Int32Array; similarity: Float32Array } {
  const toSequence = (offsets: ArrayLike<number>) => Int32Array.from(offsets, (o) => span.start + o);
  const cosines = keyCosines(view, toSequence(queries), toSequence(receivers));
  const offset = new Int32Array(queries.length);
  const similarity = new Float32Array(queries.length);
  for (let q = 0; q < queries.length; q++) {
    const best = argmaxStrided(cosines, q * receivers.length, 1, receivers.length);
    offset[q] = receivers[best];
    similarity[q] = cosines[q * receivers.length + best];
  }
  return { offset, similarity };
}

/** s_a = max_{b∈B} cos(k̄_a, k̄_b) for a ∈ A, −∞ for B; S = the r highest. */
const bipartiteFilter: Filter<TomeParams> = ({ view, span, remove }) => {
  const stride = receiverStride(span, remove);
  const receivers = receiverOffsets(span, stride);
  const queries: number[] = [];
  for (let offset = 0; offset < span.count; offset++)
    if (!isReceiver(span.start + offset, stride)) queries.push(offset);
  const { similarity } = bestReceivers(view, span, queries, receivers);
  const scores = new Float64Array(span.count).fill(-Infinity);
  queries.forEach((offset, q) => (scores[offset] = similarity[q]));
  return splitByScore(span, scores, remove);
};

/** J_a = {argmax_{b∈B} cos(k̄_a, k̄_b)} with weight 1 (K = 1). */
const bestMatchCorrelate: Correlate<TomeParams> = ({ view, span, remove }, split) => {
  const receivers = receiverOffsets(span, receiverStride(span, remove));
  const { offset } = bestReceivers(
    view,
    span,
    Array.from(split.sources, (source) => source - span.start),
    receivers,
  );
  return oneReceiverEach(Int32Array.from(offset, (o) => span.start + o));
};

export const tome = defineMethod({
  name: 'tome',
  description:
    'ToMe: bipartite soft matching on keys merges the most similar tokens, a few per vision layer, with ' +
    'size-weighted means.',
  reference:
    'Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023 (facebookresearch/ToMe ' +
    'tome/merge.py), training-free on the CLIP encoder as the LLaVA baselines run it: every layer that ' +
    'runs, ' +
    'A/B alternating over sequence indices, [CLS] protected, K = 1, size-weighted mean, proportional ' +
    'attention. Differences: r per layer comes from the budget (even, never above half the tokens; ' +
    "when the layers cannot halve down to the budget the first one uses ToMe's kth-bipartite split), " +
    "and merged tokens keep raster order instead of ToMe's [unmerged A, B] order " +
    '(the ViT is order-free after position embeddings, but later A/B alternation and the LLM see raster order).',
  params: PARAMS,
  plan(model, keep, params) {
    const layers = layerRange(layerAt(params.start, model.visionLayers), model.visionLayers - 1);
    const removals = halvingRemovals(model.visualTokens, keep, layers.length);
    return layers.map((layer, i): Step<TomeParams> => ({
      site: `vision:${layer}`,
      needs: { keyCosine: true, proportionalAttention: params.proportionalAttention },
      filter: bipartiteFilter,
      correlate: bestMatchCorrelate,
      compress: mergeIntoReceivers({ weighting: 'size', normalize: true }),
      remove: removals[i],
      params,
    }));
  },
});
