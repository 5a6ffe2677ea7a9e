import { ModelShape, ParamSpec, ParamsOf, defineMethod, layerAt, scheduledRemovals } from '../method';
import { matmul, rangeSum } from '../arrays';
import { Correlate, Filter, Step, splitByScore } from '../paradigm';
import { adaptiveReceivers } from '../stages/correlate';
import { mergeIntoReceivers } from '../stages/compress';
import { SiteView, VisualSpan } from '../tokenState';
import { SHARED_FICOCO_PARAMS, scheduleParam } from './ficoco';

export const FICOCO_L_PARAMS = {
  start: {
    type: 'number',
    default: 5 / 32,
    min: 0,
    max: 1,
    description:
      'First reducing decoder layer as a fraction of the decoder layers (official code: layers 5…31 of ' +
      '32); every later layer reduces too, or as many as schedule lists.',
  },
  schedule: scheduleParam("Twenty-seven 14s at budget 198 on LLaVA-1.5: the official code's constant r = 14."),
  beta: {
    type: 'number',
    default: 0.6,
    min: 0,
    max: 1,
    description: 'Filter weight β of the visual–visual term; the text term gets 1 − β.',
  },
  gamma: {
    type: 'number',
    default: 0.6,
    min: 0,
    max: 1,
    description: 'Correlate weight γ of the direct attention; the text-bridged indirect term gets 1 − γ.',
  },
  vvAggregate: {
    type: 'enum',
    default: 'sum',
    values: ['sum', 'mean'],
    description: 'Visual–visual filter term: sum over the visual keys (code) or their mean (paper).',
  },
  indirectScale: {
    type: 'enum',
    default: 'one',
    values: ['one', 'inverseM'],
    description: 'Scale of the indirect term Σ_k VT·TV: 1 (code) or 1/M over the M text tokens (paper).',
  },
  textSet: {
    type: 'enum',
    default: 'afterImage',
    values: ['afterImage', 'allText'],
    description:
      'Text tokens the task terms use: the text after the image (instruction), or every non-visual token ' +
      '(system prompt too).',
  },
  compress: {
    type: 'enum',
    default: 'normalized',
    values: ['normalized', 'sum'],
    description: 'Merge: self-preserving (X_j + Σα X_i)/(1 + Σα) (paper) or the unnormalised X_j + Σα X_i (code).',
  },
  attention: {
    type: 'enum',
    default: 'logits',
    values: ['logits', 'probs'],
    description:
      'Unmasked pre-softmax logits with visual-query → text-key terms (code), or causal softmax ' +
      'probabilities with the attention text tokens pay to the visual ones (the paper\'s "received from ' +
      'text").',
  },
  ...SHARED_FICOCO_PARAMS,
} satisfies Record<string, ParamSpec>;

export type FicocoLParams = ParamsOf<typeof FICOCO_L_PARAMS>;

/**
 * The attention FiCoCo-L reads: A(q, k) = data[q·stride + offset + k] over sequence indices (queries are the last
 * `count` keys).
 */
interface LlmAttention {
  data: Float32Array;
  stride: number;
  offset: number;
  /**
   * logits: VT[i,k] = A(i, k), visual query → text key (code); probs: A(k, i), what text token k pays visual token i
   * (causal-safe)
   */
  textByColumn: boolean;
}

function llmAttention(view: SiteView, params: FicocoLParams): LlmAttention {
  if (!view.attention) throw new Error(`FiCoCo-L needs the attention at ${view.site}`);
  return {
    data: view.attention,
    stride: view.keyCount,
    offset: view.keyCount - view.count,
    textByColumn: params.attention === 'probs',
  };
}

/**
 * VT[i,k] = A(i, k) (logits) or A(k, i) (probs) for visual token i and sequence index k: read in place, nothing
 * allocated per token.
 */
function visualToText({ data, stride, offset, textByColumn }: LlmAttention, visual: number, text: number): number {
  return textByColumn ? data[text * stride + offset + visual] : data[visual * stride + offset + text];
}

/** The text set of one image: non-visual tokens after its span (afterImage) or anywhere (allText), ascending. */
function textTokens(view: SiteView, span: VisualSpan, textSet: string): Int32Array {
  const visual = new Uint8Array(view.count);
  for (const s of view.spans) visual.fill(1, s.start, s.start + s.count);
  const from = textSet === 'allText' ? 0 : span.start + span.count;
  const text: number[] = [];
  for (let t = from; t < view.count; t++) if (!visual[t]) text.push(t);
  return Int32Array.from(text);
}

/** s_i = β·agg_j VV[i,j] − (1−β)·mean_k VT[i,k] over the span's tokens j and the text set k (0 without text). */
const taskAwareFilter: Filter<FicocoLParams> = (input) => {
  const { view, span, params } = input;
  const attention = llmAttention(view, params);
  const { data, stride, offset } = attention;
  const text = textTokens(view, span, params.textSet);
  const scores = new Float64Array(span.count);
  for (let v = 0; v < span.count; v++) {
    const rowStart = (span.start + v) * stride + offset + span.start;
    const visualSum = rangeSum(data, rowStart, span.count);
    let textSum = 0;
    for (let k = 0; k < text.length; k++) textSum += visualToText(attention, span.start + v, text[k]);
    const visualTerm = params.vvAggregate === 'mean' ? visualSum / span.count : visualSum;
    const textTerm = text.length > 0 ? textSum / text.length : 0;
    scores[v] = params.beta * visualTerm - (1 - params.beta) * textTerm;
  }
  return splitByScore(span, scores, input.remove);
};

/**
 * C_ij = γ·VV[i,j] + (1−γ)·scale·Σ_k VT[i,k]·TV[k,j] for j ∈ T, receivers by the ε-quantile rule, α = softmax over J_i
 * of logits, or C's share of its sum over J_i for probabilities (as FiCoCo-V).
 */
const textBridgedReceivers: Correlate<FicocoLParams> = (input, split) => {
  const { view, span, params } = input;
  const attention = llmAttention(view, params);
  const { data, stride, offset } = attention;
  const text = textTokens(view, span, params.textSet);
  const scale = text.length === 0 ? 0 : params.indirectScale === 'inverseM' ? 1 / text.length : 1;
  const { sources, targets } = split;
  const width = targets.length;
  // VT of the sources [S, M] and TV of the targets [M, T], gathered into contiguous rows for one product.
  const sourcesToText = new Float64Array(sources.length * text.length);
  for (let s = 0; s < sources.length; s++)
    for (let k = 0; k < text.length; k++)
      sourcesToText[s * text.length + k] = visualToText(attention, sources[s], text[k]);
  const textToTargets = new Float64Array(text.length * width);
  for (let k = 0; k < text.length; k++)
    for (let t = 0; t < width; t++) textToTargets[k * width + t] = data[text[k] * stride + offset + targets[t]];
  const indirect = matmul(sourcesToText, textToTargets, sources.length, text.length, width);
  const indirectWeight = (1 - params.gamma) * scale;
  const rowOf = (i: number, k: number) => {
    const values = new Float64Array(width);
    const direct = i * stride + offset;
    const bridged = k * width;
    for (let t = 0; t < width; t++)
      values[t] = params.gamma * data[direct + targets[t]] + indirectWeight * indirect[bridged + t];
    return { candidates: targets, values };
  };
  return adaptiveReceivers(split, rowOf, {
    epsilon: params.epsilon,
    strict: params.strictThreshold,
    probabilities: params.attention === 'probs',
  });
};

export const ficocoL = defineMethod({
  name: 'ficoco-l',
  description:
    'FiCoCo-L: text-aware filtering and text-bridged merging of visual tokens inside the LLM decoder, ' +
    'layer by layer.',
  reference:
    'Filter, Correlate, Compress (arXiv 2411.17686v4): the filter of Eq. 3 and the correlation of Eq. 4, ' +
    'with switches between the official code (defaults: logits, VV sum, indirect scale 1) and the paper ' +
    '(mean, 1/M, normalised merge — the default compress). ' +
    'The image span comes from the prompt (not positions 0…575) and the text set is the text after it; ' +
    'kept tokens keep their original positions and later decode steps continue the prompt numbering (the ' +
    'engine\'s "original" policy), so the code\'s off-by-r decode positions cannot happen. ' +
    "Receivers are the span's kept tokens only: the code lets a source send to any visual token but " +
    'itself, and what it sends to another source is lost when that source leaves. ' +
    "Scores use float64 (the code's fp16 indirect sum can overflow). " +
    'By default the schedule removes tokens evenly over the reducing layers to end exactly at the budget, ' +
    'where the official code removes a constant r = 14 per layer; the schedule parameter reproduces it ' +
    '(twenty-seven 14s at budget 198 on LLaVA-1.5). ' +
    'With probabilities the causal mask zeroes visual→later-text attention, so the text terms use the ' +
    'attention text tokens pay the visual ones.',
  params: FICOCO_L_PARAMS,
  plan: (model, keep, params) => ficocoLSteps(model, keep, params, 'ficoco-l.schedule'),
});

/** FiCoCo-L's steps; `scheduleName` names the schedule in a refusal (FiCoCo-VL's is its llmSchedule). */
export function ficocoLSteps(
  model: ModelShape,
  keep: number,
  params: FicocoLParams,
  scheduleName: string,
): Step<FicocoLParams>[] {
  const { layers, removals } = scheduledRemovals(
    layerAt(params.start, model.textLayers),
    model.textLayers - 1,
    model.visualTokens - keep,
    params.schedule,
    scheduleName,
  );
  return layers.map((layer, i) => ({
    site: `llm:${layer}`,
    needs: { attention: params.attention === 'probs' ? 'probs' : 'logits' },
    filter: taskAwareFilter,
    correlate: textBridgedReceivers,
    compress: mergeIntoReceivers({
      weighting: params.sizeWeighted ? 'size' : 'self-preserving',
      normalize: params.compress === 'normalized',
    }),
    remove: removals[i],
    params,
  }));
}
