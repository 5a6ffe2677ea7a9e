import { StageInput } from '../paradigm';
import { SiteView, VisualSpan } from '../tokenState';

/** Signals that decoder-side filters (FastV, PDrop, SparseVLM, DART) read from an `llm:<l>` site. */

/**
 * a_j = (1/Q) Σ_q A[q, j] for each span token j, the queries q being `queries` (FastV: every token; PDrop: the last
 * one), A the site's head-averaged attention, summed row by row (row-major: a column walk misses the cache per query).
 */
export function attentionFrom(input: StageInput<unknown>, method: string, queries: ArrayLike<number>): Float64Array {
  const { view, span } = input;
  const attention = view.attention;
  if (!attention) throw new Error(`${method} needs the attention at ${view.site}`);
  const received = new Float64Array(span.count);
  for (let q = 0; q < queries.length; q++) {
    const row = queries[q] * view.keyCount + span.start;
    for (let j = 0; j < span.count; j++) received[j] += attention[row + j];
  }
  const count = Math.max(1, queries.length);
  return received.map((sum) => sum / count);
}

/** Every sequence index 0 … count−1: the queries of FastV's "attention received". */
export function allTokens(view: { count: number }): Int32Array {
  return Int32Array.from({ length: view.count }, (_, i) => i);
}

/** Text tokens after the span (outside every image span): the question and the assistant prefix of a chat prompt. */
export function textAfter(view: SiteView, span: VisualSpan): Int32Array {
  const inImage = new Uint8Array(view.count);
  for (const s of view.spans) inImage.fill(1, s.start, s.start + s.count);
  const text: number[] = [];
  for (let i = span.start + span.count; i < view.count; i++) if (!inImage[i]) text.push(i);
  return Int32Array.from(text);
}

/** The score that sends the least important tokens first: s = −importance. */
export function leastImportantFirst(importance: Float64Array): Float64Array {
  return importance.map((a) => -a);
}
