import { ParamSpec, ParamsOf, defineMethod, layerAt } from '../method';
import { Filter, Step, noReceivers, splitByScore } from '../paradigm';
import { dropSources } from '../stages/compress';
import { allTokens, attentionFrom, leastImportantFirst } from '../stages/decoderSignals';

const PARAMS = {
  scoreLayer: {
    type: 'number',
    default: 1 / 32,
    min: 0,
    max: 1,
    description:
      'Decoder layer K−1 whose attention ranks the image tokens, as a fraction of the depth (1/32: ' +
      "FastV's K = 2 on 32-layer Vicuna-7B).",
  },
  queries: {
    type: 'enum',
    default: 'all',
    values: ['all', 'last'],
    description:
      'Whose attention ranks the image tokens: every token\'s, averaged (the paper\'s "attention received"), or ' +
      "the last token's alone (FastV's released code).",
  },
} satisfies Record<string, ParamSpec>;

type FastvParams = ParamsOf<typeof PARAMS>;

/**
 * a_j = (1/N) Σ_q A[q, j]: attention image token j receives, averaged over heads and every query (or the last one's
 * alone); the least attended leave.
 */
const receivedAttentionFilter: Filter<FastvParams> = (input) => {
  const { view, params } = input;
  const queries = params.queries === 'last' ? [view.count - 1] : allTokens(view);
  return splitByScore(input.span, leastImportantFirst(attentionFrom(input, 'FastV', queries)), input.remove);
};

export const fastv = defineMethod({
  name: 'fastv',
  description: 'FastV: after an early decoder layer, drop the image tokens that receive the least attention.',
  reference:
    "An Image is Worth 1/2 Tokens After Layer 2 (Chen et al., ECCV'24, arXiv 2403.06764): prune once at " +
    "layer K = 2, ranking by layer K−1's attention averaged over heads and all queries (queries: 'last' ranks " +
    "by the last token's row, as FastV's released code does). " +
    "We hook llm:(K−1) after its attention, which is equivalent (the MLP is token-wise and that layer's " +
    "cache already holds every token). The budget is the number of image tokens kept, not FastV's ratio " +
    'R.',
  params: PARAMS,
  plan(model, keep, params) {
    const step: Step<FastvParams> = {
      site: `llm:${layerAt(params.scoreLayer, model.textLayers)}`,
      needs: { attention: 'probs' },
      filter: receivedAttentionFilter,
      correlate: (_input, split) => noReceivers(split),
      compress: dropSources,
      remove: model.visualTokens - keep,
      params,
    };
    return [step];
  },
});
