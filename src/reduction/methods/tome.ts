import { dot, row } from '../arrays';
import { Method, ParamSpec, layerAt, layerRange } from '../method';
import { Correlate, Filter, Step, asSteps, correlationFrom, splitByScore } from '../paradigm';
import { mergeIntoReceivers } from '../stages/compress';
import { SiteView, VisualSpan } from '../tokenState';

const PARAMS = {
  start: { type: 'number', default: 0, min: 0, max: 1, description: 'First merging vision layer as a fraction of the layers that run (0: every layer, as ToMe).' },
  proportionalAttention: { type: 'boolean', default: true, description: 'Vision attention adds log(size) of each key to its logits (ToMe\'s proportional attention).' },
} satisfies Record<string, ParamSpec>;

type TomeParams = { [K in keyof typeof PARAMS]: (typeof PARAMS)[K]['default'] };

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

/** k̂_t = k̄_t / ‖k̄_t‖ for each span token (ToMe's metric: keys averaged over heads), span order. */
function unitKeys(view: SiteView, span: VisualSpan): Float64Array[] {
  const keys = view.meanKeys;
  if (!keys) throw new Error(`ToMe needs the keys at ${view.site}`);
  const headDim = keys.length / view.keyCount;
  return Array.from({ length: span.count }, (_, offset) => {
    const key = Float64Array.from(row(keys, headDim, span.start + offset));
    const length = Math.sqrt(dot(key, key));
    return length === 0 ? key : key.map((v) => v / length);
  });
}

/** argmax_{b∈B} k̂_a·k̂_b, ties to the earlier b: the receiver's span offset and the similarity. */
function bestReceiver(key: Float64Array, keys: Float64Array[], span: VisualSpan, stride: number): { offset: number; similarity: number } {
  let best = { offset: -1, similarity: -Infinity };
  keys.forEach((other, offset) => {
    if (!isReceiver(span.start + offset, stride)) return;
    const similarity = dot(key, other);
    if (best.offset < 0 || similarity > best.similarity) best = { offset, similarity };
  });
  return best;
}

/** s_a = max_{b∈B} cos(k̄_a, k̄_b) for a ∈ A, −∞ for B; S = the r highest. */
const bipartiteFilter: Filter<TomeParams> = ({ view, span, remove }) => {
  const keys = unitKeys(view, span);
  const stride = receiverStride(span, remove);
  const scores = Float64Array.from(keys, (key, offset) => (isReceiver(span.start + offset, stride) ? -Infinity : bestReceiver(key, keys, span, stride).similarity));
  return splitByScore(span, scores, remove);
};

/** J_a = {argmax_{b∈B} cos(k̄_a, k̄_b)} with weight 1 (K = 1). */
const bestMatchCorrelate: Correlate<TomeParams> = ({ view, span, remove }, split) => {
  const keys = unitKeys(view, span);
  const stride = receiverStride(span, remove);
  return correlationFrom(Array.from(split.sources, (source) => ({ receivers: [span.start + bestReceiver(keys[source - span.start], keys, span, stride).offset], weights: [1] })));
};

export const tome: Method = {
  name: 'tome',
  description: 'ToMe: bipartite soft matching on keys merges the most similar tokens, a few per vision layer, with size-weighted means.',
  reference:
    'Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023 (facebookresearch/ToMe tome/merge.py), training-free on the CLIP encoder as the LLaVA baselines run it: every layer that runs, ' +
    'A/B alternating over sequence indices, [CLS] protected, K = 1, size-weighted mean, proportional attention. Differences: r per layer comes from the budget (even, never above half the tokens; ' +
    'when the layers cannot halve down to the budget the first one uses ToMe\'s kth-bipartite split), and merged tokens keep raster order instead of ToMe\'s [unmerged A, B] order ' +
    '(the ViT is order-free after position embeddings, but later A/B alternation and the LLM see raster order).',
  params: PARAMS,
  plan(model, keep, raw) {
    const params = raw as TomeParams;
    const layers = layerRange(layerAt(params.start, model.visionLayers), model.visionLayers - 1);
    const removals = halvingRemovals(model.visualTokens, keep, layers.length);
    return asSteps(layers.map((layer, i): Step<TomeParams> => ({
      site: `vision:${layer}`,
      needs: { keys: true },
      filter: bipartiteFilter,
      correlate: bestMatchCorrelate,
      compress: mergeIntoReceivers({ weighting: 'size', normalize: true }),
      remove: removals[i],
      params,
      proportionalAttention: params.proportionalAttention,
    })));
  },
};
