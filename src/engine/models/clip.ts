import { layerNorm } from '../graph/ops';
import { Block } from '../graph/segment';
import type { VisionConfig } from './family';
import { patchRows, VIT_BASE_DEFAULTS, vitTowerKind } from './vit';
import { WeightScope } from './weights';

/** The CLIP vision tower (vision_config.model_type clip_vision_model), with a [CLS] token before the patches. */
export const clipVisionTower = vitTowerKind({
  modelType: 'clip_vision_model',
  // transformers' CLIPVisionConfig defaults, for fields a config leaves out
  defaults: { ...VIT_BASE_DEFAULTS, patch_size: 32, layer_norm_eps: 1e-5, hidden_act: 'quick_gelu' },
  classToken: true,
  embeddings: clipEmbeddings,
});

/** [CLS] then the patches, plus learned positions, then CLIP's pre_layrnorm. */
function clipEmbeddings(config: VisionConfig, weights: WeightScope): Block {
  const { hiddenSize: width, patchSize } = config;
  const patches = config.patchesPerSide ** 2;
  const classEmbedding = weights.get('embeddings.class_embedding', [width]);
  const patchEmbedding = weights.get('embeddings.patch_embedding.weight', [width, 3, patchSize, patchSize]);
  const positionEmbedding = weights.get('embeddings.position_embedding.weight', [patches + 1, width]);
  const preNorm = {
    weight: weights.get('pre_layrnorm.weight', [width]),
    bias: weights.get('pre_layrnorm.bias', [width]),
  };
  return {
    id: 'vision.embed',
    width,
    emit(scope, pixels) {
      const { g } = scope;
      const cls = g.op('Unsqueeze', [scope.weight(classEmbedding), g.int64s('axes.0', [0])], 'vision.embed.cls');
      const rows = patchRows(scope, pixels, config, { weight: patchEmbedding });
      const tokens = g.op('Concat', [cls, rows], 'vision.embed.tokens', { axis: 0 });
      const positioned = g.op('Add', [tokens, scope.weight(positionEmbedding)], 'vision.embed.positioned');
      return {
        hidden: layerNorm(
          g,
          positioned,
          scope.weight(preNorm.weight),
          scope.weight(preNorm.bias),
          config.layerNormEps,
          'vision.embed.out',
        ),
      };
    },
  };
}
