import { Filter, splitByImportance } from '../paradigm';
import { SiteView, VisualSpan } from '../tokenState';

/**
 * Per span token, how much the image's summary attends to it: a_i = A[CLS, i], the head-averaged [CLS]
 * row. Without [CLS], the mean attention the token receives, a_i = (1/n) Σ_q A[q, i] over the site's n
 * queries (the fallback VisPruner and the VisionZip ports for [CLS]-free encoders use).
 */
export function classAttention(view: SiteView, span: VisualSpan): Float64Array {
  const attention = view.attention;
  if (!attention) throw new Error(`[CLS] attention is not available at ${view.site}; the step must ask for attention`);
  const keys = view.keyCount;
  if (view.hasClassToken) return Float64Array.from({ length: span.count }, (_, i) => attention[span.start + i]);
  const received = new Float64Array(span.count);
  for (let query = 0; query < view.count; query++) {
    for (let i = 0; i < span.count; i++) received[i] += attention[query * keys + span.start + i] / view.count;
  }
  return received;
}

/** classAttention of every visual token, by sequence index (0 for tokens outside the spans). */
export function classAttentionBySequence(view: SiteView): Float64Array {
  const bySequence = new Float64Array(view.count);
  for (const span of view.spans) bySequence.set(classAttention(view, span), span.start);
  return bySequence;
}

/** Pruning by importance: the top count − `remove` by [CLS] attention a_i stay (ties to the earlier), the rest leave. */
export const lowClassAttentionLeaves: Filter<unknown> = ({ view, span, remove }) =>
  splitByImportance(span, classAttention(view, span), remove);
