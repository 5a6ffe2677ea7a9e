import type { ModelArch } from '../../flops/model';
import type { ModelConfig } from './family';

/** The FLOPs model's description of a parsed config (one source of truth for sizes and defaults). */
export function flopsArchOf(config: ModelConfig, name: string): ModelArch {
  const { vision, text } = config;
  const patches = vision.patchesPerSide ** 2;
  return {
    name,
    vision: {
      hiddenSize: vision.hiddenSize,
      intermediateSize: vision.intermediateSize,
      heads: vision.heads,
      layers: vision.layers,
      layersRun: config.visionLayers,
      imageSize: vision.imageSize,
      patchSize: vision.patchSize,
      channels: 3,
      classToken: vision.classToken,
    },
    visualTokensPerImage: config.classTokenInFeatures ? patches + 1 : patches,
    visionPassesPerImage: 1,
    ...(config.tiling ? { anyres: config.tiling } : {}),
    projector: { inputSize: vision.hiddenSize, hiddenSize: text.hiddenSize, outputSize: text.hiddenSize },
    llm: {
      hiddenSize: text.hiddenSize,
      intermediateSize: text.intermediateSize,
      layers: text.layers,
      heads: text.heads,
      kvHeads: text.kvHeads,
      headDim: text.headDim,
    },
  };
}
