import { ModelShape, ParamSpec, ParamsOf, defineMethod, layerAt, scheduledRemovals } from '../method';
import { rangeSum } from '../arrays';
import { Correlate, Filter, Step, spanTokens, splitByScore } from '../paradigm';
import { adaptiveReceivers } from '../stages/correlate';
import { mergeIntoReceivers } from '../stages/compress';
import { VisualSpan } from '../tokenState';
import {
  SHARED_FICOCO_PARAMS,
  scheduleParam,
  localPenalty,
  meanKeyTerm,
  requireAttention,
  weightedDifference,
} from './ficoco';

export const FICOCO_V_PARAMS = {
  start: {
    type: 'number',
    default: 0.52,
    min: 0,
    max: 1,
    description:
      'First reducing vision layer as a fraction of the layers that run (0.52 × 23 → layer 12 for CLIP-L ' +
      'in LLaVA-1.5, as the official code).',
  },
  schedule: scheduleParam("Eleven 42s at budget 114 on LLaVA-1.5: the official code's constant r = 42."),
  weights: {
    type: 'enum',
    default: 'code',
    values: ['code', 'paper'],
    description: 'Patch / [CLS] term weights: code 0.65 / 0.35, paper λ = 0.35 / 0.65.',
  },
  patchTerm: {
    type: 'enum',
    default: 'rowMean',
    values: ['rowMean', 'colMean'],
    description: 'Patch redundancy: row mean of the attention (code) or attention received, the column mean (paper).',
  },
  attention: {
    type: 'enum',
    default: 'logits',
    values: ['logits', 'probs'],
    description: 'Scores from pre-softmax logits (code) or softmax probabilities (paper).',
  },
  l2normalize: {
    type: 'boolean',
    default: true,
    description: 'L2-normalise both filter terms over the patches (code).',
  },
  window: { type: 'integer', default: 2, min: 1, max: 16, description: 'Local-penalty window W (W×W patches).' },
  penalty: {
    type: 'number',
    default: 2,
    min: 1,
    max: 8,
    description: 'Local-penalty scaling of the most redundant token per window (1 turns it off).',
  },
  receivers: {
    type: 'enum',
    default: 'targets',
    values: ['targets', 'targets+cls'],
    description: 'Receivers: kept patches only (paper), or also [CLS] (as the official code allows).',
  },
  ...SHARED_FICOCO_PARAMS,
} satisfies Record<string, ParamSpec>;

type FicocoVParams = ParamsOf<typeof FICOCO_V_PARAMS>;

/**
 * Redundancy s_i = w_p·p̂_i − w_c·ĉ_i (+ local penalty): p = patch attention term, c = [CLS] attention (or the mean-key
 * proxy without [CLS]).
 */
const redundancyFilter: Filter<FicocoVParams> = (input) => {
  const { view, span, params } = input;
  const attention = requireAttention(view);
  const keys = view.keyCount;
  const patchTerm =
    params.patchTerm === 'rowMean' ? spanRowMeans(attention, keys, span) : spanColumnMeans(attention, keys, span);
  const semanticTerm = view.hasClassToken
    ? Float64Array.from(spanTokens(span), (i) => attention[i])
    : meanKeyTerm(input);
  const [wPatch, wCls] = params.weights === 'code' ? [0.65, 0.35] : [0.35, 0.65];
  const scores = weightedDifference(patchTerm, semanticTerm, {
    weightFirst: wPatch,
    weightSecond: wCls,
    normalize: params.l2normalize,
  });
  const penalised =
    params.penalty === 1 ? scores : localPenalty(scores, span.tokenPatch, span.grid, params.window, params.penalty);
  return splitByScore(span, penalised, input.remove);
};

/** p_i = mean_j A[i, j] over the span's tokens (the code's row mean) */
function spanRowMeans(attention: Float32Array, keys: number, span: VisualSpan): Float64Array {
  const means = new Float64Array(span.count);
  for (let t = 0; t < span.count; t++)
    means[t] = rangeSum(attention, (span.start + t) * keys + span.start, span.count) / span.count;
  return means;
}

/** p_i = mean_j A[j, i] over the span's tokens (attention received, the paper's reading) */
function spanColumnMeans(attention: Float32Array, keys: number, span: VisualSpan): Float64Array {
  const sums = new Float64Array(span.count);
  for (let q = 0; q < span.count; q++) {
    const from = (span.start + q) * keys + span.start;
    for (let t = 0; t < span.count; t++) sums[t] += attention[from + t];
  }
  return sums.map((sum) => sum / span.count);
}

/** C_ij = A_ij over the kept patches (and [CLS] if asked), receivers by the ε-quantile rule. */
const attentionReceivers: Correlate<FicocoVParams> = (input, split) => {
  const { view, params } = input;
  const attention = requireAttention(view);
  const candidates =
    params.receivers === 'targets+cls' && view.hasClassToken ? Int32Array.of(0, ...split.targets) : split.targets;
  const keys = view.keyCount;
  const rowOf = (source: number) => {
    const values = new Float64Array(candidates.length);
    for (let k = 0, from = source * keys; k < candidates.length; k++) values[k] = attention[from + candidates[k]];
    return { candidates, values };
  };
  return adaptiveReceivers(split, rowOf, {
    epsilon: params.epsilon,
    strict: params.strictThreshold,
    probabilities: params.attention === 'probs',
  });
};

export const ficocoV = defineMethod({
  name: 'ficoco-v',
  description:
    'FiCoCo-V: redundancy-filtered merging inside the vision encoder with token-adaptive receivers and ' +
    'self-preserving compression.',
  reference:
    'Filter, Correlate, Compress (arXiv 2411.17686v4): the filter of Eq. 1, the ε-quantile receivers and ' +
    "the self-preserving merge of Eq. 2, defaulting to the official code's score semantics (weights, row-mean " +
    'logits, L2 normalisation). ' +
    'Not reproduced: score-order shuffling that displaces [CLS], the never-reset global penalty buffer, ' +
    'receivers indexed into the wrong tensor, one K per layer. Without [CLS] the mean-key proxy of ' +
    'v4 Appendix 10.2 replaces the [CLS] term. ' +
    'By default the schedule removes tokens evenly over the reducing layers to end exactly at the budget, ' +
    'where the official code removes a constant r = 42 per layer; the schedule parameter reproduces it ' +
    '(eleven 42s at budget 114 on LLaVA-1.5).',
  params: FICOCO_V_PARAMS,
  plan: (model, keep, params) => ficocoVSteps(model, keep, params, 'ficoco-v.schedule'),
});

/** FiCoCo-V's steps; `scheduleName` names the schedule in a refusal (FiCoCo-VL's is its visionSchedule). */
export function ficocoVSteps(
  model: ModelShape,
  keep: number,
  params: FicocoVParams,
  scheduleName: string,
): Step<FicocoVParams>[] {
  const { layers, removals } = scheduledRemovals(
    layerAt(params.start, model.visionLayers),
    model.visionLayers - 1,
    model.visualTokens - keep,
    params.schedule,
    scheduleName,
  );
  return layers.map((layer, i) => ({
    site: `vision:${layer}`,
    // A ToMe-style extension (sizeWeighted): with sizes carried, later layers attend proportionally to them.
    needs: {
      attention: params.attention === 'probs' ? 'probs' : 'logits',
      keys: !model.hasClassToken,
      proportionalAttention: params.sizeWeighted,
    },
    filter: redundancyFilter,
    correlate: attentionReceivers,
    compress: mergeIntoReceivers({ weighting: params.sizeWeighted ? 'size' : 'self-preserving', normalize: true }),
    remove: removals[i],
    params,
  }));
}
