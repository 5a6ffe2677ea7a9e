import { rowDot, topIndices } from '../arrays';
import { ParamSpec, ParamsOf, defineMethod, layerAt } from '../method';
import { Filter, Step, noReceivers, spanTokens, splitByKept } from '../paradigm';
import { dropSources } from '../stages/compress';
import { hiddenNorms } from '../stages/recycle';
import { textAfter } from '../stages/decoderSignals';
import { SiteView, VisualSpan } from '../tokenState';

const PARAMS = {
  scoreLayer: {
    type: 'number',
    default: 1 / 32,
    min: 0,
    max: 1,
    description:
      'Decoder layer K−1 whose keys and hidden states choose the tokens, as a fraction of depth (1/32: ' +
      "DART's K = 2 on 32-layer Vicuna-7B).",
  },
  imagePivots: {
    type: 'integer',
    default: 4,
    min: 0,
    max: 64,
    description: 'Pivots among the image tokens (largest key L1 norm).',
  },
  textPivots: {
    type: 'integer',
    default: 4,
    min: 0,
    max: 64,
    description: 'Pivots among the text tokens after the image (largest key L1 norm).',
  },
} satisfies Record<string, ParamSpec>;

type DartParams = ParamsOf<typeof PARAMS>;

/** ‖k_t‖₁ of each token's head-averaged key. */
function keyL1Norms(view: SiteView, tokens: Int32Array): Float64Array {
  const keys = view.meanKeys;
  if (!keys) throw new Error(`DART needs the keys at ${view.site}`);
  const headDim = keys.length / view.keyCount;
  const norms = new Float64Array(tokens.length);
  for (let k = 0; k < tokens.length; k++) {
    let sum = 0;
    for (let d = tokens[k] * headDim, end = d + headDim; d < end; d++) sum += Math.abs(keys[d]);
    norms[k] = sum;
  }
  return norms;
}

/** The `count` tokens with the largest key L1 norm (ties to the earlier token). */
function pivotsByKeyNorm(view: SiteView, tokens: Int32Array, count: number): number[] {
  const norms = keyL1Norms(view, tokens);
  return topIndices(norms, Math.min(count, tokens.length)).map((k) => tokens[k]);
}

/**
 * dup_i = max_p cos(h_p, h_i) for each span token i (span order): how much it duplicates its closest pivot p. Read
 * from the hidden states (pivots × tokens products), not a cosine matrix of every pair of the prompt's tokens.
 */
function duplication(view: SiteView, span: VisualSpan, pivots: readonly number[]): Float64Array {
  const { hidden, width } = view;
  const pivotNorms = hiddenNorms(view, Int32Array.from(pivots));
  const tokenNorms = hiddenNorms(view, spanTokens(span));
  const scores = new Float64Array(span.count).fill(-Infinity);
  for (let i = 0; i < span.count; i++) {
    const token = span.start + i;
    for (let p = 0; p < pivots.length; p++) {
      const denominator = pivotNorms[p] * tokenNorms[i];
      const cos = denominator === 0 ? 0 : rowDot(hidden, width, pivots[p], token) / denominator;
      scores[i] = Math.max(scores[i], cos);
    }
  }
  return scores;
}

/**
 * Keeps the image pivots plus the image tokens least duplicated by any pivot (image or text), ties to the earlier
 * token.
 */
const duplicationFilter: Filter<DartParams> = (input) => {
  const { view, span, params } = input;
  const keep = span.count - input.remove;
  const imagePivots = pivotsByKeyNorm(view, spanTokens(span), Math.min(params.imagePivots, keep));
  const pivots = [...imagePivots, ...pivotsByKeyNorm(view, textAfter(view, span), params.textPivots)];
  const scores = pivots.length === 0 ? new Float64Array(span.count) : duplication(view, span, pivots);
  const isPivot = new Uint8Array(span.count);
  for (const pivot of imagePivots) isPivot[pivot - span.start] = 1;
  const candidates: number[] = [];
  for (let i = 0; i < span.count; i++) if (!isPivot[i]) candidates.push(i);
  const leastDuplicated = candidates.sort((a, b) => scores[a] - scores[b] || a - b).slice(0, keep - imagePivots.length);
  const split = splitByKept(span, [...imagePivots.map((p) => p - span.start), ...leastDuplicated]);
  const splitScores = new Float32Array(span.count);
  for (let i = 0; i < span.count; i++) splitScores[i] = isPivot[i] ? -Infinity : scores[i];
  return { ...split, scores: splitScores };
};

export const dart = defineMethod({
  name: 'dart',
  description:
    'DART: after an early decoder layer, keep the image tokens least duplicated by a few high-key-norm ' +
    'pivot tokens.',
  reference:
    "Stop Looking for Important Tokens (Wen et al., EMNLP'25, arXiv 2502.11494) and ZichenWen1/DART: " +
    'pivots = 4 image + 4 text tokens (after the image) with the largest key L1 norm at layer K−1 = 1, ' +
    'duplication = cosine of hidden states (each token against the pivots); prune before layer K = ' +
    '2. ' +
    'Departures: keys are head-averaged (the code concatenates heads, a proxy for the L1 norm); hidden ' +
    "states are the site's residual stream after layer K−1's attention, not the final-RMSNormed layer " +
    'output; ' +
    'the code lets each pivot in turn take its ⌊B/8⌋ least similar tokens (keeping pivots + 8⌊B/8⌋, e.g. ' +
    '132 for B = 128), we keep exactly B: the image pivots plus the tokens with the lowest max-cosine to ' +
    'any pivot.',
  params: PARAMS,
  plan(model, keep, params) {
    const step: Step<DartParams> = {
      site: `llm:${layerAt(params.scoreLayer, model.textLayers)}`,
      needs: { keys: true },
      filter: duplicationFilter,
      correlate: (_input, split) => noReceivers(split),
      compress: dropSources,
      remove: model.visualTokens - keep,
      params,
    };
    return [step];
  },
});
