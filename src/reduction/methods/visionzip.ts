import { topIndices } from '../arrays';
import { ParamSpec, ParamsOf, defineMethod } from '../method';
import { Correlate, Filter, StageInput, noReceivers, oneReceiverEach, splitByKept } from '../paradigm';
import { mergeIntoReceivers } from '../stages/compress';
import { classAttention } from '../stages/importance';
import { argmaxStrided, keyCosines } from '../stages/similarity';

const PARAMS = {
  contextualShare: {
    type: 'number',
    default: 10 / 64,
    min: 0,
    max: 1,
    description:
      'Share of the kept tokens that are contextual (merged) tokens; the paper keeps 54 dominant + 10 ' +
      'contextual of 64.',
  },
} satisfies Record<string, ParamSpec>;

type VisionZipParams = ParamsOf<typeof PARAMS>;

/**
 * Span offsets of the kept tokens: with B kept, C = round(share·B) contextual and D = B − C dominant;
 * dominant = top-D by [CLS] attention; contextual targets = every ⌊R/C⌋-th of the R others (span order), the first C.
 */
function dominantAndContextual({ view, span, remove, params }: StageInput<VisionZipParams>): {
  dominant: number[];
  contextual: number[];
} {
  const keep = span.count - remove;
  const contextualCount = Math.round(params.contextualShare * keep);
  const dominant = topIndices(classAttention(view, span), keep - contextualCount);
  const isDominant = new Set(dominant);
  const rest = Array.from({ length: span.count }, (_, i) => i).filter((i) => !isDominant.has(i));
  const step = Math.max(1, Math.floor(rest.length / Math.max(1, contextualCount)));
  const contextual = rest.filter((_, r) => r % step === 0).slice(0, contextualCount);
  return { dominant, contextual };
}

/** Dominant and contextual tokens stay; every other token leaves. */
const dominantContextualFilter: Filter<VisionZipParams> = (input) => {
  const { dominant, contextual } = dominantAndContextual(input);
  return splitByKept(input.span, [...dominant, ...contextual]);
};

/**
 * Each leaving token goes, with weight 1, to the contextual target whose key is most similar (cosine), ties to the
 * earlier target.
 */
const contextualReceivers: Correlate<VisionZipParams> = (input, split) => {
  const { contextual } = dominantAndContextual(input);
  if (contextual.length === 0) return noReceivers(split);
  const targets = contextual.map((offset) => input.span.start + offset);
  const similarity = keyCosines(input.view, split.sources, targets);
  return oneReceiverEach(
    Int32Array.from(split.sources, (_, k) => targets[argmaxStrided(similarity, k * targets.length, 1, targets.length)]),
  );
};

export const visionZip = defineMethod({
  name: 'visionzip',
  description:
    'VisionZip: keep the dominant tokens by [CLS] attention and average the rest into a few contextual ' +
    'tokens, before the projector.',
  reference:
    'VisionZip: Longer is Better but Not Necessary in Vision Language Models (CVPR 2025, arXiv ' +
    '2412.04467); official code dvlab-research/VisionZip. ' +
    'Dominant tokens by head-averaged [CLS] attention (the paper sums over heads: same ranking); ' +
    'contextual targets uniformly spaced over the rest, every other token assigned to its most similar ' +
    'target by head-averaged key cosine. ' +
    'Follows the paper where the code differs: a contextual token is the mean of its group (the code ' +
    'adds the group mean to the target, target + mean), and the budget is exact (the code also passes ' +
    'the [CLS] hidden state on, one token more). ' +
    'Budget split dominant:contextual = 54:10 at 64, scaled to other budgets. Without [CLS], the mean ' +
    'attention each token receives ranks the dominant tokens. On a tiled image the passes are ranked together by ' +
    'it, each keeping what it wins, of which its contextual share as above.',
  params: PARAMS,
  plan(model, keep, params) {
    return [
      {
        site: 'features',
        needs: { attention: 'probs', keyCosine: true },
        filter: dominantContextualFilter,
        correlate: contextualReceivers,
        // α = 1 per source: (X_j + Σ X_i) / (1 + n), the plain mean of the target's group.
        compress: mergeIntoReceivers({ weighting: 'self-preserving', normalize: true }),
        remove: model.visualTokens - keep,
        rank: classAttention,
        params,
      },
    ];
  },
});
