/**
 * How many prompt tokens one run of a decoder segment takes at prefill: few enough that attention and every segment's
 * memory arena stay bounded, and chunks of equal size, so that no short last one reads the weights again.
 */

/**
 * Prompt tokens a decoder segment takes at most at once: its attention then holds [heads, 256, prompt] floats, not
 * [heads, prompt, prompt] (3 GB per copy at a 1080p OneVision prompt), and a chunk computes fewer of the logits its
 * causal mask hides (int8 TinyLlama at 2,048 tokens: 7.8–8.0 s against 10.0–10.3 s in chunks of 1,024); a segment a
 * hook reads whole runs whole.
 */
export const PREFILL_CHUNK_TOKENS = 256;
/**
 * Bytes of attention logits one chunk may hold, shared among a plan's decoder segments: every segment's session keeps
 * a memory arena as large as its largest run, so a decoder cut at twenty hooks (FiCoCo-L) takes shorter chunks.
 */
const CHUNK_ATTENTION_BYTES = 2 ** 30;
/** Below about 256 rows the decoder's matrix products lose more than a tenth of their speed (prepacked F32 Gemm). */
const MIN_PREFILL_CHUNK_TOKENS = 256;

/**
 * Prompt tokens one run of a decoder segment takes: as many as keep a chunk's attention logits [heads, chunk, keys]
 * within its segment's share of CHUNK_ATTENTION_BYTES, at least MIN_PREFILL_CHUNK_TOKENS, at most `limit`.
 */
export function promptChunkTokens(limit: number, segmentCount: number, heads: number, keys: number): number {
  const rows = Math.floor(CHUNK_ATTENTION_BYTES / (segmentCount * heads * keys * Float32Array.BYTES_PER_ELEMENT));
  return Math.min(limit, Math.max(MIN_PREFILL_CHUNK_TOKENS, rows));
}

/**
 * The size of equal chunks covering `tokens`, as many as the nearest whole number of `most`-sized ones (so at most
 * 1.5 × `most`): a short last chunk would stream every weight of the segment again for a few rows.
 */
export function equalChunkTokens(tokens: number, most: number): number {
  return Math.ceil(tokens / Math.max(1, Math.round(tokens / most)));
}
