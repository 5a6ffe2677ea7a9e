import { defineMethod } from '../method';
import { Filter, Step, noReceivers, splitByKept } from '../paradigm';
import { dropSources } from '../stages/compress';
import { maxMinDiverse } from '../stages/diversity';

/** The span's most diverse B projected embeddings stay (greedy max–min of d = 1 − cos, cos from the engine). */
const diverseSetFilter: Filter<unknown> = ({ view, span, remove }) => {
  if (!view.hiddenCosine) throw new Error(`DivPrune needs the hidden cosine at ${view.site}`);
  return splitByKept(span, maxMinDiverse(view.hiddenCosine, view.count, span, span.count - remove));
};

export const divPrune = defineMethod({
  name: 'divprune',
  description:
    'DivPrune: keep the most diverse projected visual tokens (greedy max–min cosine distance); prune the rest.',
  reference:
    'DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models (CVPR 2025, arXiv ' +
    '2503.02175); official code vbdi/divprune. ' +
    'On the projected embeddings as the decoder reads them (the official code prunes the spliced input embeddings; a ' +
    "tiled image's passes packed into one set; its row ends are set aside and kept, where the official code counts " +
    "them in the image and may drop them), d = 1 − cosine (the engine's hidden cosine " +
    "matrix); seed = the token whose nearest neighbour is farthest (the official code's first step), then the token " +
    'farthest from the chosen set, until B. ' +
    'Chosen tokens are excluded explicitly (the code relies on their zero self-distance). Needs no attention.',
  params: {},
  plan(model, keep, params) {
    return [
      {
        site: 'packed',
        needs: { hiddenCosine: true },
        filter: diverseSetFilter,
        correlate: (_input, split) => noReceivers(split),
        compress: dropSources,
        remove: model.visualTokens - keep,
        params,
      } satisfies Step,
    ];
  },
});
