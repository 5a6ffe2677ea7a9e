import { StageInput, spanTokens } from '../paradigm';
import { SiteView, VisualSpan } from '../tokenState';

/** Signals that decoder-side filters (FastV, PDrop, SparseVLM, DART) read from an `llm:<l>` site. */

/** Entry (query, key) of the site's head-averaged attention; throws when the step did not ask for it. */
export function attentionAt(view: SiteView, method: string): (query: number, key: number) => number {
  const attention = view.attention;
  if (!attention) throw new Error(`${method} needs the attention at ${view.site}`);
  const keys = view.keyCount;
  return (query, key) => attention[query * keys + key];
}

/**
 * a_j = (1/Q) Σ_q A[q, j] for each span token j, the queries q being `queries` (FastV: every token; PDrop: the last
 * one).
 */
export function attentionFrom(input: StageInput<unknown>, method: string, queries: ArrayLike<number>): Float64Array {
  const at = attentionAt(input.view, method);
  return Float64Array.from(spanTokens(input.span), (j) => {
    let sum = 0;
    for (let q = 0; q < queries.length; q++) sum += at(queries[q], j);
    return sum / Math.max(1, queries.length);
  });
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
