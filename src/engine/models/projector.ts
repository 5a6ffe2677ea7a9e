import { activation, linear } from '../graph/ops';
import { Block } from '../graph/segment';
import type { LlavaConfig } from './llava';
import { WeightScope, bindLinear } from './weights';

/**
 * LLaVA's feature selection and mlp2x_gelu projector: drop [CLS] ('default' strategy), then
 * linear_1 → activation → linear_2 into the decoder's width. Hook site `projector` follows it.
 */
export function projectorBlock(config: LlavaConfig, weights: WeightScope): Block {
  const visionWidth = config.vision.hiddenSize;
  const textWidth = config.text.hiddenSize;
  const first = weights.linear('linear_1', visionWidth, textWidth, { bias: config.projector.bias });
  const second = weights.linear('linear_2', textWidth, textWidth, { bias: config.projector.bias });
  return {
    id: 'projector',
    site: 'projector',
    width: textWidth,
    emit(scope, x) {
      const { g } = scope;
      const selected =
        config.visionFeatureSelect === 'default'
          ? g.op(
              'Slice',
              [x, g.int64s('i.1', [1]), g.int64s('i.max', [Number.MAX_SAFE_INTEGER]), g.int64s('axes.0', [0])],
              'projector.patches',
            )
          : x;
      const hidden = activation(
        g,
        linear(g, selected, bindLinear(scope, first), 'projector.linear_1'),
        config.projector.activation,
        'projector.act',
      );
      return { hidden: linear(g, hidden, bindLinear(scope, second), 'projector.linear_2') };
    },
  };
}
