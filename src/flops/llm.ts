/**
 * Prefill FLOPs and KV-cache size of a Llama-style decoder, in LLM-Viewer's accounting — the count behind
 * the TFLOPs the FiCoCo paper reports (its appendix names LLM-Viewer; its own formula, arXiv 2411.17686v4
 * Appendix 8, does not give them). Per layer with N tokens, hidden D, FFN H, h heads (MHA, head_dim = D/h):
 *
 *   F(N) = 2N(4D² + 3DH) + 4N²D + 5hN² + 18ND
 *
 * 2 ops per multiply-accumulate; q,k,v,o and gate/up/down projections; QKᵀ and AV over the full N×N
 * (no causal halving, unless a ScoreCount asks for it); softmax 5 ops per score; per token-element: 2 RMSNorms × 7,
 * 2 residual adds × 1, SiLU + gate multiply × 2 (LLM-Viewer counts the activation at width D, not H; kept for
 * compatibility). Generalised: GQA (k/v projections are D × kvHeads·headDim) and an explicit head_dim (q: D × h·headDim,
 * o: h·headDim × D, attention 4N²·h·headDim). Biases, embeddings, rotary tables and lm_head are not counted.
 */
import { checkLayerTokens, LayerFlops, layerFlops } from './layer';
import { checkCount, FlopsError } from './errors';

/** The decoder sizes the count needs (a subset of a Hugging Face text_config). */
export interface LlmArch {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

/**
 * Which attention scores a count includes: every query-key pair, as LLM-Viewer and the paper count them, or only
 * those a causal mask keeps (each query's keys up to its own), what a kernel that skips masked scores computes.
 */
export type ScoreCount = 'all' | 'causal';

/** Per token-element ops, LLM-Viewer's values (see the file comment). */
export const LLM_ELEMENTWISE = { rmsNorm: 7, residualAdd: 1, gatedActivation: 2 } as const;

/**
 * FLOPs of one decoder layer at prefill. `tokens` enter the layer (attention attends over all of them);
 * `mlpTokens` (default `tokens`) enter its MLP half — smaller when a reduction runs between attention and
 * MLP inside the layer (FiCoCo-L's placement in its official code, after the attention residual).
 */
export function llmLayerFlops(
  arch: LlmArch,
  tokens: number,
  mlpTokens = tokens,
  scores: ScoreCount = 'all',
): LayerFlops {
  checkLayerTokens(tokens, mlpTokens, 'decoder');
  const { hiddenSize: d, intermediateSize: ffn, heads, kvHeads, headDim } = arch;
  const n = tokens;
  const m = mlpTokens;
  const qWidth = heads * headDim;
  const kvWidth = kvHeads * headDim;
  const attentionProjections = 2 * n * (d * qWidth + 2 * d * kvWidth + qWidth * d);
  // query-key pairs: N² (all), N(N + 1)/2 (causal)
  const pairs = scores === 'all' ? n * n : (n * (n + 1)) / 2;
  const attentionScores = 4 * pairs * qWidth;
  const softmax = 5 * heads * pairs;
  const mlp = 2 * m * 3 * d * ffn;
  const e = LLM_ELEMENTWISE;
  const elementwise = (e.rmsNorm + e.residualAdd) * n * d + (e.rmsNorm + e.residualAdd + e.gatedActivation) * m * d;
  return layerFlops({ attentionProjections, attentionScores, softmax, mlp, elementwise });
}

/**
 * Prefill FLOPs of the whole decoder: `tokensPerLayer[i]` tokens enter layer i (one entry per layer;
 * a reduction inside the LLM shortens the later entries). `mlpTokensPerLayer`, when given, holds the
 * tokens entering each layer's MLP half.
 */
export function llmPrefillFlops(
  arch: LlmArch,
  tokensPerLayer: readonly number[],
  mlpTokensPerLayer?: readonly number[],
  scores: ScoreCount = 'all',
): number {
  checkLayerList(arch, tokensPerLayer, 'decoder token list');
  if (mlpTokensPerLayer) checkLayerList(arch, mlpTokensPerLayer, 'decoder MLP token list');
  let total = 0;
  tokensPerLayer.forEach((n, i) => {
    total += llmLayerFlops(arch, n, mlpTokensPerLayer?.[i] ?? n, scores).total;
  });
  return total;
}

/** KV-cache bytes one token occupies across all layers: 2 (k and v) · layers · kvHeads·headDim · bytesPerElement. */
export function kvBytesPerToken(arch: LlmArch, bytesPerElement = 2): number {
  return 2 * arch.layers * arch.kvHeads * arch.headDim * bytesPerElement;
}

/**
 * KV-cache bytes after prefill when layer i caches `tokensPerLayer[i]` tokens (the tokens that entered it:
 * the cache is written before any in-layer reduction, as in FiCoCo-L's official code).
 */
export function kvCacheBytes(arch: LlmArch, tokensPerLayer: readonly number[], bytesPerElement = 2): number {
  checkLayerList(arch, tokensPerLayer, 'decoder token list');
  const perLayerToken = 2 * arch.kvHeads * arch.headDim * bytesPerElement;
  return tokensPerLayer.reduce((sum, n) => sum + n * perLayerToken, 0);
}

function checkLayerList(arch: LlmArch, list: readonly number[], what: string): void {
  if (list.length !== arch.layers)
    throw new FlopsError(
      `The ${what} has ${list.length} entries; the decoder has ${arch.layers} layers (one entry per layer).`,
      'input',
    );
  list.forEach((n, i) => checkCount(n, `${what}[${i}]`));
}
