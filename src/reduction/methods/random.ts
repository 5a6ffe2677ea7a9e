import { seededRandom } from '../../common/random';
import { ParamSpec, ParamsOf, defineMethod } from '../method';
import { Filter, Step, noReceivers, splitByKept } from '../paradigm';
import { dropSources } from '../stages/compress';

const PARAMS = {
  seed: {
    type: 'integer',
    default: 0,
    min: 0,
    max: 2 ** 31 - 1,
    description: 'Seed of the random choice; the same seed keeps the same tokens.',
  },
} satisfies Record<string, ParamSpec>;

type RandomParams = ParamsOf<typeof PARAMS>;

/**
 * T = a uniformly random (count − r)-subset of the span (seeded partial Fisher–Yates shuffle), S = the rest. Each pass
 * of a tiled image draws its own: the same draw on every tile kept whole rows of the screenshot and dropped others.
 */
const randomFilter: Filter<RandomParams> = ({ view, span, remove, params }) => {
  const random = seededRandom(params.seed ^ Math.imul(view.pass ?? 0, 0x9e3779b1));
  const order = Array.from({ length: span.count }, (_, i) => i);
  const keep = span.count - remove;
  for (let i = 0; i < keep; i++) {
    const j = i + Math.floor(random() * (span.count - i));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return splitByKept(span, order.slice(0, keep));
};

export const random = defineMethod({
  name: 'random',
  description: "Random pruning baseline: keeps a seeded uniform random subset of each image's projected tokens.",
  reference:
    'The random-pruning baseline of the token-reduction benchmarks (e.g. UniPruneBench, arXiv ' +
    '2511.02650): uniform choice at the projector output, dropped tokens discarded. ' +
    'Every image of a prompt keeps the same positions for a given seed; the passes of a tiled image (its base image ' +
    'and tiles) each draw their own.',
  params: PARAMS,
  plan(model, keep, params) {
    return [
      {
        site: 'projector',
        needs: {},
        filter: randomFilter,
        correlate: (_input, split) => noReceivers(split),
        compress: dropSources,
        remove: model.visualTokens - keep,
        params,
      } satisfies Step<RandomParams>,
    ];
  },
});
