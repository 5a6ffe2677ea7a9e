/**
 * FLOPs of a CLIP ViT vision tower and the LLaVA MLP projector, in the same accounting as llm.ts
 * (2 ops per multiply-accumulate, full N×N attention, 5 ops per softmax score). Per layer with N tokens,
 * hidden D, MLP size I, h heads:
 *
 *   F(N) = 2N(4D² + 2DI) + 4N²D + 5hN² + 16ND + NI
 *
 * Per element: LayerNorm 7 (LLM-Viewer's norm count) ×2 per layer, residual add 1 ×2, (quick_)GELU 1 on the
 * I-wide MLP hidden; linear biases are not counted (LLM-Viewer ignores them too).
 */
import { checkLayerTokens, LayerFlops, layerFlops } from './layer';
import { checkCount, FlopsError } from './errors';

/** A ViT vision tower (CLIP, SigLIP): pre-LayerNorm encoder layers over the patch tokens, after a [CLS] or not. */
export interface VisionArch {
  hiddenSize: number;
  intermediateSize: number;
  heads: number;
  /** encoder layers in the checkpoint */
  layers: number;
  /** encoder layers that actually run: LLaVA stops at vision_feature_layer (−2 → 23 of 24) */
  layersRun: number;
  imageSize: number;
  patchSize: number;
  channels: number;
  /** a class token precedes the patches (CLIP's [CLS]); SigLIP has none */
  classToken: boolean;
}

/** The LLaVA projector: Linear(in → hidden), activation, Linear(hidden → out). */
export interface ProjectorArch {
  inputSize: number;
  hiddenSize: number;
  outputSize: number;
}

/** Per token-element ops (see the file comment). */
export const VISION_ELEMENTWISE = { layerNorm: 7, residualAdd: 1, activation: 1, positionAdd: 1 } as const;

/** Patches along each side: the patch convolution has no padding, so a remainder of pixels is never seen. */
export function patchesPerSide(arch: VisionArch): number {
  return Math.floor(arch.imageSize / arch.patchSize);
}

/** Tokens the tower sees per pass (an image, or a tile of one): one per patch, plus [CLS] where it has one. */
export function visionTokensPerImage(arch: VisionArch): number {
  return patchesPerSide(arch) ** 2 + (arch.classToken ? 1 : 0);
}

/**
 * FLOPs of one encoder layer: `tokens` enter it; `mlpTokens` (default `tokens`) enter its MLP half —
 * fewer when a reduction runs between attention and MLP inside the layer (FiCoCo-V / ToMe placement).
 */
export function visionLayerFlops(arch: VisionArch, tokens: number, mlpTokens = tokens): LayerFlops {
  checkLayerTokens(tokens, mlpTokens, 'vision');
  const { hiddenSize: d, intermediateSize: ffn, heads } = arch;
  const n = tokens;
  const m = mlpTokens;
  const attentionProjections = 2 * n * 4 * d * d;
  const attentionScores = 4 * n * n * d;
  const softmax = 5 * heads * n * n;
  const mlp = 2 * m * 2 * d * ffn;
  const e = VISION_ELEMENTWISE;
  const elementwise = (e.layerNorm + e.residualAdd) * (n + m) * d + e.activation * m * ffn;
  return layerFlops({ attentionProjections, attentionScores, softmax, mlp, elementwise });
}

/** Patch embedding (a stride-p convolution = one matmul per patch), position add and pre-LayerNorm, per image. */
export function visionEmbeddingFlops(arch: VisionArch): number {
  const tokens = visionTokensPerImage(arch);
  const patches = patchesPerSide(arch) ** 2;
  const e = VISION_ELEMENTWISE;
  return (
    2 * patches * arch.channels * arch.patchSize * arch.patchSize * arch.hiddenSize +
    (e.positionAdd + e.layerNorm) * tokens * arch.hiddenSize
  );
}

/**
 * FLOPs of one image through the tower: embeddings, then `tokensPerLayer[i]` tokens entering run layer i
 * (one entry per layer that runs, `arch.layersRun`). `mlpTokensPerLayer`: tokens entering each MLP half.
 */
export function visionTowerFlops(
  arch: VisionArch,
  tokensPerLayer: readonly number[],
  mlpTokensPerLayer?: readonly number[],
): number {
  checkList(arch, tokensPerLayer, 'vision token list');
  if (mlpTokensPerLayer) checkList(arch, mlpTokensPerLayer, 'vision MLP token list');
  let total = arch.layersRun > 0 ? visionEmbeddingFlops(arch) : 0;
  tokensPerLayer.forEach((n, i) => {
    total += visionLayerFlops(arch, n, mlpTokensPerLayer?.[i] ?? n).total;
  });
  return total;
}

/** Projector FLOPs for `tokens` tokens: 2N(in·hidden + hidden·out) + N·hidden (GELU). */
export function projectorFlops(arch: ProjectorArch, tokens: number): number {
  checkCount(tokens, 'tokens entering the projector');
  return (
    2 * tokens * (arch.inputSize * arch.hiddenSize + arch.hiddenSize * arch.outputSize) +
    VISION_ELEMENTWISE.activation * tokens * arch.hiddenSize
  );
}

function checkList(arch: VisionArch, list: readonly number[], what: string): void {
  if (list.length !== arch.layersRun)
    throw new FlopsError(
      `The ${what} has ${list.length} entries; the tower runs ${arch.layersRun} layers (one entry per ` +
        `layer that runs).`,
      'input',
    );
  const max = visionTokensPerImage(arch);
  list.forEach((n, i) => {
    checkCount(n, `${what}[${i}]`);
    if (n > max) throw new FlopsError(`${what}[${i}] is ${n}; an image has only ${max} vision tokens.`, 'input');
  });
}
