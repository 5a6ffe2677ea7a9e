import { ParamSpec, ParamsOf, defineMethod, geometricRemovals, layerAt } from '../method';
import { Filter, Step, splitByScore } from '../paradigm';
import { FusionWeights, convergentCorrelation, fuseIntoSink } from '../stages/fuse';
import { classAttention, classAttentionBySequence } from '../stages/importance';
import { SiteView } from '../tokenState';

const PARAMS = {
  stages: {
    type: 'integer',
    default: 3,
    min: 1,
    max: 8,
    description:
      "Reducing vision layers, at fractions 1/(n+1) … n/(n+1) of the layers that run (3: DeiT's 4th / 7th " +
      '/ 10th of 12).',
  },
  fusedMean: {
    type: 'boolean',
    default: true,
    description: 'Fused token = Σ a_i x_i / Σ a_i (paradigm); off: Σ a_i x_i, as the EViT code (trained with it).',
  },
} satisfies Record<string, ParamSpec>;

type EvitParams = ParamsOf<typeof PARAMS>;

/** a_i = softmax attention of [CLS] to token i (head-averaged); without [CLS], the mean attention token i receives. */
const attentiveness: FusionWeights = (view: SiteView) => {
  const bySequence = classAttentionBySequence(view);
  return (token) => bySequence[token];
};

/** s_i = −a_i; the r + 1 least attended tokens leave, since one fused token comes back (net removal r). */
const inattentiveFilter: Filter<EvitParams> = ({ view, span, remove }) =>
  splitByScore(
    span,
    classAttention(view, span).map((a) => -a),
    remove + 1,
  );

export const evit = defineMethod({
  name: 'evit',
  description:
    'EViT: keep the tokens [CLS] attends to most, fuse the rest into one attention-weighted token, at a ' +
    'few vision layers.',
  reference:
    'Liang et al., "Not All Patches are What You Need", ICLR 2022 (youweiliang/evit), in the FiCoCo ' +
    'paradigm\'s terms (arXiv 2411.17686: "convergent" correlation into one fused token). Layers at fractions 1/4, 1/2, 3/4 of the layers that run (DeiT: 0-based ' +
    '3/6/9 of 12); ' +
    'the keep rate is the constant ratio that reaches the budget. Kept tokens stay in raster order and ' +
    'the fused token goes last in the span (EViT sorts kept tokens by attention; the ViT is order-free ' +
    'after position embeddings). ' +
    "The fused token defaults to the normalised Σa x / Σa (the code's unnormalised sum, trained into " +
    'DeiT, is the fusedMean = false switch). Without [CLS], a_i is the mean attention token i receives.',
  params: PARAMS,
  plan(model, keep, params) {
    const layers = [
      ...new Set(
        Array.from({ length: params.stages }, (_, i) => layerAt((i + 1) / (params.stages + 1), model.visionLayers)),
      ),
    ];
    const removals = geometricRemovals(model.visualTokens, keep, layers.length);
    return layers.map((layer, i): Step<EvitParams> => ({
      site: `vision:${layer}`,
      needs: { attention: 'probs' },
      filter: inattentiveFilter,
      correlate: convergentCorrelation,
      compress: fuseIntoSink(attentiveness, { normalize: params.fusedMean }),
      remove: removals[i],
      params,
    }));
  },
});
