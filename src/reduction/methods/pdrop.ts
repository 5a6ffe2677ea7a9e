import { ParamSpec, ParamsOf, defineMethod, geometricRemovals } from '../method';
import { Filter, Step, noReceivers, splitByScore } from '../paradigm';
import { dropSources } from '../stages/compress';
import { attentionFrom, leastImportantFirst } from '../stages/decoderSignals';
import { removalsAtLayers } from '../stages/schedule';

const PARAMS = {
  stages: {
    type: 'integer',
    default: 3,
    min: 1,
    max: 8,
    description: 'Drop points at the boundaries of stages+1 equal stages of depth (3: before layers 8, 16, 24 of 32).',
  },
} satisfies Record<string, ParamSpec>;

type PdropParams = ParamsOf<typeof PARAMS>;

/** a_j = A[last, j]: attention from the last instruction token to image token j; the least attended leave. */
const lastInstructionFilter: Filter<PdropParams> = (input) =>
  splitByScore(input.span, leastImportantFirst(attentionFrom(input, 'PDrop', [input.view.count - 1])), input.remove);

export const pdrop = defineMethod({
  name: 'pdrop',
  description:
    'PyramidDrop: at each stage boundary of the decoder, drop the image tokens the last instruction ' +
    'token attends to least.',
  reference:
    "PyramidDrop (Xing et al., CVPR'25): stages split at layers 8, 16, 24 of 32 (fractions " +
    "s/(stages+1)); at each boundary the image tokens ranked by the last instruction token's attention, " +
    'a fixed ratio λ kept. ' +
    'Here λ per stage is geometric so the LAST stage keeps exactly the budget; the paper usually quotes ' +
    'a budget as the average over stages (λ = 0.5 keeps 576→288→144→72 ≈ 270 on average), so our "64" is ' +
    'stricter — the FLOPs report shows the true cost. ' +
    "PDrop scores with layer l's own q·k of the last token on its input; we read the real attention row " +
    'of layer l−1 at llm:(l−1) (the nearest signal the engine exposes), and layer l onwards sees the ' +
    'shorter sequence.',
  params: PARAMS,
  plan(model, keep, params) {
    const fractions = Array.from({ length: params.stages }, (_, i) => (i + 1) / (params.stages + 1));
    const removals = geometricRemovals(model.visualTokens, keep, params.stages);
    return removalsAtLayers(fractions, -1, model.textLayers, removals).map(({ layer, remove }): Step<PdropParams> => ({
      site: `llm:${layer}`,
      needs: { attention: 'probs' },
      filter: lastInstructionFilter,
      correlate: (_input, split) => noReceivers(split),
      compress: dropSources,
      remove,
      params,
    }));
  },
});
