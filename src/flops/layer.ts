import { FlopsError, checkCount } from './errors';

/** FLOPs of one transformer layer by part (vision or decoder). */
export interface LayerFlops {
  /** q, k, v, o projections */
  attentionProjections: number;
  /** QKᵀ and AV */
  attentionScores: number;
  softmax: number;
  /** the MLP's matrices (fc1/fc2, or gate/up/down) */
  mlp: number;
  /** norms, residual adds, activation */
  elementwise: number;
  total: number;
}

/** The parts of a layer's FLOPs, and their sum. */
export function layerFlops(parts: Omit<LayerFlops, 'total'>): LayerFlops {
  const { attentionProjections, attentionScores, softmax, mlp, elementwise } = parts;
  return { ...parts, total: attentionProjections + attentionScores + softmax + mlp + elementwise };
}

/** `tokens` enter a layer and `mlpTokens` its MLP half: counts, and never more in the MLP than the layer saw. */
export function checkLayerTokens(tokens: number, mlpTokens: number, where: string): void {
  checkCount(tokens, `tokens entering the ${where} layer`);
  checkCount(mlpTokens, `tokens entering the ${where} MLP`);
  if (mlpTokens > tokens)
    throw new FlopsError(
      `tokens entering the ${where} MLP (${mlpTokens}) exceed tokens entering the layer (${tokens}).`,
      'input',
    );
}
