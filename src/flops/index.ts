/** Analytic FLOPs / memory model (paper-compatible). Pure TypeScript; imports nothing from the engine. */
export { FlopsError } from './errors';
export { LLM_ELEMENTWISE, kvBytesPerToken, kvCacheBytes, llmLayerFlops, llmPrefillFlops } from './llm';
export type { LayerFlops } from './layer';
export type { LlmArch, ScoreCount } from './llm';
export {
  VISION_ELEMENTWISE,
  projectorFlops,
  visionEmbeddingFlops,
  visionLayerFlops,
  patchesPerSide,
  visionTokensPerImage,
  visionTowerFlops,
} from './vision';
export type { ProjectorArch, VisionArch } from './vision';
export {
  ARCH_PRESETS,
  archForImage,
  archPreset,
  peakRunBytes,
  reducedBeforeLlmShape,
  runFlops,
  runKvCacheBytes,
  unreducedShape,
} from './model';
export type { ModelArch, PromptSize, RunFlops, RunShape } from './model';
export { flopsRows, flopsTable, flopsUnit } from './table';
export type { FlopsRow } from './table';
