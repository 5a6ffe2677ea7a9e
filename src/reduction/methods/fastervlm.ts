import { defineMethod } from '../method';
import { Step, noReceivers } from '../paradigm';
import { dropSources } from '../stages/compress';
import { classAttention, lowClassAttentionLeaves } from '../stages/importance';

export const fasterVLM = defineMethod({
  name: 'fastervlm',
  description:
    'FasterVLM: keep the visual tokens the [CLS] token attends to most, before the projector; prune the rest.',
  reference:
    'FasterVLM, "[CLS] Attention is All You Need for Training-Free Visual Token Pruning" (arXiv ' +
    '2412.01818); official code Theia-4869/FasterVLM. ' +
    'Top-B patches by the head-averaged [CLS] attention probabilities of the layer that produces the ' +
    'features (LLaVA: the penultimate CLIP layer). ' +
    'Without [CLS], the mean attention each token receives ranks them instead. On a tiled image the base ' +
    "image's and the tiles' patches are ranked together (each pass's scores come from its own softmax), so a pass " +
    'keeps what it wins.',
  params: {},
  plan(model, keep, params) {
    return [
      {
        site: 'features',
        needs: { attention: 'probs' },
        filter: lowClassAttentionLeaves,
        correlate: (_input, split) => noReceivers(split),
        compress: dropSources,
        remove: model.visualTokens - keep,
        rank: classAttention,
        params,
      } satisfies Step,
    ];
  },
});
