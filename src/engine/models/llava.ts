import { Tower } from '../graph/segment';
import type { DecoderQuantizer } from '../weights/quantizedCache';
import type { WeightIndex } from '../weights/safetensors';
import { clipPixelInput, clipVisionBlocks } from './clip';
import { LlavaConfig } from './config';
import { decoderTower, embeddingTower } from './llama';
import { projectorBlock } from './projector';
import { WeightScope } from './weights';

export const IMAGE_FEATURES = 'image_features';

/** A LLaVA model as three towers: pixels → image features, token ids → embeddings, embeddings → logits. */
export interface LlavaTowers {
  vision: Tower;
  embed: Tower;
  decoder: Tower;
  /** the patch grid of one image */
  grid: { rows: number; cols: number };
  hasClassToken: boolean;
}

/** Binds config.json to the checkpoint's tensors, under either naming transformers has used; `quantizer` takes the decoder layers' linear layers. */
export function llavaTowers(config: LlavaConfig, weights: WeightIndex, quantizer?: DecoderQuantizer): LlavaTowers {
  const vision = WeightScope.find(weights, ['vision_tower.vision_model.', 'model.vision_tower.vision_model.'], 'embeddings.patch_embedding.weight', 'CLIP vision tower');
  const projector = WeightScope.find(weights, ['multi_modal_projector.', 'model.multi_modal_projector.'], 'linear_1.weight', 'multi-modal projector');
  const text = WeightScope.find(weights, ['language_model.model.', 'model.language_model.'], 'embed_tokens.weight', 'language model', quantizer);
  const lmHead = config.text.tieWordEmbeddings ? text : WeightScope.find(weights, ['language_model.', ''], 'lm_head.weight', 'lm_head (and tie_word_embeddings is false)');
  const side = config.vision.imageSize / config.vision.patchSize;
  const lastVisionLayer = config.visionFeatureLayer - 1;
  return {
    vision: {
      name: 'vision',
      input: clipPixelInput(config.vision),
      output: { name: IMAGE_FEATURES, dims: ['tokens', config.text.hiddenSize] },
      blocks: [...clipVisionBlocks(config.vision, vision, lastVisionLayer), projectorBlock(config, projector)],
    },
    embed: embeddingTower(config.text, text),
    decoder: decoderTower(config.text, text, lmHead),
    grid: { rows: side, cols: side },
    hasClassToken: true,
  };
}
