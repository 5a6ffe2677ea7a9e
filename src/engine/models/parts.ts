/** The parts a model family is made of, by the model_type its config.json names for them: a line per architecture. */
import { clipVisionTower } from './clip';
import { siglipVisionTower } from './siglip';
import type { DecoderKind, VisionTowerKind } from './family';
import { unsupported } from './fields';
import { LLAMA_STYLE_DECODERS } from './llama';

const VISION_TOWERS: Record<string, VisionTowerKind> = {
  clip_vision_model: clipVisionTower,
  siglip_vision_model: siglipVisionTower,
};

const DECODERS: Record<string, DecoderKind> = {
  ...LLAMA_STYLE_DECODERS,
};

/** The vision tower of vision_config.model_type; `source` names config.json in the error. */
export function visionTowerKind(modelType: unknown, source: string): VisionTowerKind {
  const kind =
    typeof modelType === 'string' && Object.hasOwn(VISION_TOWERS, modelType) ? VISION_TOWERS[modelType] : undefined;
  if (!kind) throw unsupported(source, 'vision_config.model_type', modelType, Object.keys(VISION_TOWERS));
  return kind;
}

/** The decoder of text_config.model_type. */
export function decoderKind(modelType: unknown, source: string): DecoderKind {
  const kind = typeof modelType === 'string' && Object.hasOwn(DECODERS, modelType) ? DECODERS[modelType] : undefined;
  if (!kind) throw unsupported(source, 'text_config.model_type', modelType, Object.keys(DECODERS));
  return kind;
}
