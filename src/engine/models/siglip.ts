import { Block } from '../graph/segment';
import type { VisionConfig } from './family';
import { patchRows, VIT_BASE_DEFAULTS, vitTowerKind } from './vit';
import { WeightScope } from './weights';

/**
 * The SigLIP vision tower (vision_config.model_type siglip_vision_model): patches only, no class token and no
 * pre-LayerNorm; its encoder layers are CLIP's. The attention-pooling head is never used by LLaVA models.
 */
export const siglipVisionTower = vitTowerKind({
  modelType: 'siglip_vision_model',
  // transformers' SiglipVisionConfig defaults, for fields a config leaves out
  defaults: { ...VIT_BASE_DEFAULTS, patch_size: 16, layer_norm_eps: 1e-6, hidden_act: 'gelu_pytorch_tanh' },
  classToken: false,
  embeddings: siglipEmbeddings,
});

/** The patches (a strided convolution with a bias), plus learned positions. */
function siglipEmbeddings(config: VisionConfig, weights: WeightScope): Block {
  const { hiddenSize: width, patchSize, patchesPerSide } = config;
  const conv = {
    weight: weights.get('embeddings.patch_embedding.weight', [width, 3, patchSize, patchSize]),
    bias: weights.get('embeddings.patch_embedding.bias', [width]),
  };
  const positionEmbedding = weights.get('embeddings.position_embedding.weight', [patchesPerSide ** 2, width]);
  return {
    id: 'vision.embed',
    width,
    emit(scope, pixels) {
      const rows = patchRows(scope, pixels, config, conv);
      return { hidden: scope.g.op('Add', [rows, scope.weight(positionEmbedding)], 'vision.embed.out') };
    },
  };
}
