import type { AttentionNeeds } from '../../reduction/tokenState';
import { ElemType, GraphBuilder } from './builder';
import { Linear, applyRotary, linear, meanOverHeads, mergeHeads, splitHeads } from './ops';

export interface AttentionWeights {
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
}

export interface AttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
}

export interface PastKeysValues {
  keys: string;
  values: string;
  mask: string;
  /**
   * a bool scalar, true when the run is a prompt chunk long enough that ONNX Runtime's fused GroupQueryAttention beats
   * the explicit ops (which stay faster for a decode step); without it attention is always explicit
   */
  promptChunk?: string;
}

export interface AttentionOptions {
  rotary?: { cos: string; sin: string };
  /**
   * cached keys / values [kvHeads, slots, headDim] and an additive mask [slots + tokens] that hides the slots not in
   * use (0 or the lowest float; 0 for this run's tokens): the cache keeps spare slots so that a step writes only its
   * new rows
   */
  past?: PastKeysValues;
  /** the run's causal triangle [tokens, tokens] (`causalTriangle`); without it every token sees every key */
  causal?: string;
  /**
   * log(size) of each key [keys], added to every query's logits before the softmax (proportional attention); exposed
   * logits stay without it
   */
  logSizes?: string;
  /** what a reduction hook asked to see from this layer's attention */
  expose?: AttentionNeeds;
}

export interface AttentionResult {
  out: string;
  /** this run's keys / values, [kvHeads, tokens, headDim]: what the KV cache appends */
  newKeys: string;
  newValues: string;
  attention?: string;
  meanKeys?: string;
  /** with a cache and unmasked logits exposed: [tokens, kvHeads·headDim] rows whose products are the head-mean logits */
  queryRows?: string;
  keyRows?: string;
}

/** softmax(q·kᵀ/√d + mask)·v over heads, then the output projection. x is the normed input [tokens, hidden]. */
export function attention(
  g: GraphBuilder,
  x: string,
  w: AttentionWeights,
  shape: AttentionShape,
  options: AttentionOptions,
  hint: string,
): AttentionResult {
  const { heads, kvHeads, headDim } = shape;
  const projected = (layer: Linear, name: string, headCount: number) => {
    const y = linear(g, x, layer, `${hint}.${name}_proj`);
    const rotated = options.rotary ? applyRotary(g, y, options.rotary, headCount, `${hint}.${name}_rope`) : y;
    return splitHeads(g, rotated, headCount, headDim, `${hint}.${name}`);
  };
  const queries = projected(w.q, 'q', heads);
  const keys = projected(w.k, 'k', kvHeads);
  const values = splitHeads(g, linear(g, x, w.v, `${hint}.v_proj`), kvHeads, headDim, `${hint}.v`);
  const exposure = options.expose ?? {};
  const { past } = options;
  // With a cache, unmasked logits go out as two factors (below) that need no scores.
  const logitFactors = exposure.attention === 'logits' && past !== undefined;
  // The fused op computes no attention matrix to expose, adds no log(size) bias, and its CPU kernel takes head sizes in
  // multiples of 8.
  const fusable =
    options.causal !== undefined && !options.logSizes && (!exposure.attention || logitFactors) && headDim % 8 === 0;
  const promptChunk = fusable ? past?.promptChunk : undefined;
  let scores: ExplicitAttention | undefined;
  let context: string;
  if (past && promptChunk) {
    [context] = g.ifElse(
      promptChunk,
      [`${hint}.ctx`],
      [g.floatType],
      () => [groupQueryAttention(g, queries, keys, values, past, shape, hint)],
      () => [explicitAttention(g, queries, keys, values, shape, options, hint).context],
    );
  } else {
    scores = explicitAttention(g, queries, keys, values, shape, options, hint);
    context = scores.context;
  }
  const out = linear(g, context, w.o, `${hint}.out`);

  const result: AttentionResult = { out, newKeys: keys, newValues: values };
  // With a cache, a run sees only some of the prompt's queries (a chunk): what it exposes is its rows, which the engine
  // gathers over the chunks. Causal probabilities are complete per row; unmasked logits reach keys not yet computed,
  // so the run gives their two factors instead, mean_h q_h·k_h/√d = (Σ_kv Σ_{h∈kv} q_h / (heads·√d))·k_kv.
  if (logitFactors) {
    const groups = heads / kvHeads;
    const summed =
      groups === 1
        ? queries
        : g.op(
            'ReduceSum',
            [
              g.op(
                'Reshape',
                [queries, g.int64s(`shape.groups.${kvHeads}.${groups}`, [kvHeads, groups, -1, headDim])],
                `${hint}.q_groups`,
              ),
              g.int64s('axes.1', [1]),
            ],
            `${hint}.q_group_sums`,
            { keepdims: 0 },
          );
    const meanScale = 1 / (heads * Math.sqrt(headDim));
    const scaled = g.op('Mul', [summed, g.scalar(`scale.heads.${heads}.${headDim}`, meanScale)], `${hint}.q_head_mean`);
    result.queryRows = mergeHeads(g, scaled, `${hint}.query_rows`);
    result.keyRows = mergeHeads(g, keys, `${hint}.key_rows`);
  } else if (exposure.attention && scores) {
    const source = exposure.attention === 'logits' ? scores.logits : scores.probs;
    result.attention = meanOverHeads(g, source, heads, `${hint}.attention_mean`);
  }
  if (exposure.keys || exposure.keyCosine) {
    // With a cache, the run's own rows (the engine gathers them); without one, newKeys are all the keys.
    result.meanKeys = meanOverHeads(g, keys, kvHeads, `${hint}.keys_mean`);
  }
  return result;
}

interface ExplicitAttention {
  /** [tokens, heads·headDim] */
  context: string;
  /** [heads, tokens, keys], before the masks */
  logits: string;
  probs: string;
}

/**
 * Attention as MatMul, Add and Softmax ops: every logit is a graph value a hook can read. With a cache the run's keys
 * and values are not appended to it: the cache and the run each get their own products, so a decode step reads the
 * cache instead of copying it first.
 */
function explicitAttention(
  g: GraphBuilder,
  queries: string,
  newKeys: string,
  newValues: string,
  { heads, kvHeads, headDim }: AttentionShape,
  options: AttentionOptions,
  hint: string,
): ExplicitAttention {
  const { past } = options;
  const groups = heads / kvHeads;
  const scaledQueries = g.op(
    'Mul',
    [queries, g.scalar(`scale.${headDim}`, 1 / Math.sqrt(headDim))],
    `${hint}.q_scaled`,
  );
  // Grouped-query attention without copying keys and values per query head: the query heads sharing a KV head are
  // contiguous, so [heads, q, d] is [kvHeads, groups·q, d] in the same memory, and one MatMul per KV head serves them.
  // (A last dimension of 0 in a Reshape keeps the input's.)
  const byKvHead = (x: string, last: number, name: string) =>
    groups === 1 ? x : g.op('Reshape', [x, g.int64s(`shape.kv.${kvHeads}.${last}`, [kvHeads, -1, last])], name);
  const byHead = (x: string, last: number, name: string) =>
    groups === 1 ? x : g.op('Reshape', [x, g.int64s(`shape.heads.${heads}.${last}`, [heads, -1, last])], name);
  const groupedQueries = byKvHead(scaledQueries, headDim, `${hint}.q_grouped`);
  const logitsOver = (keys: string, name: string) =>
    g.op('MatMul', [groupedQueries, g.op('Transpose', [keys], `${name}T`, { perm: [0, 2, 1] })], name);
  const { causal } = options;
  let groupedLogits: string;
  if (past) {
    // Cached keys come before the run's tokens: the triangle (one copy per query head of a KV head) masks only the run's
    // own keys, the slots' mask [keys] the unused slots.
    const ownLogits = logitsOver(newKeys, `${hint}.logits_new`);
    const ownMasked = !causal
      ? ownLogits
      : g.op(
          'Add',
          [
            ownLogits,
            groups === 1
              ? causal
              : g.op('Tile', [causal, g.int64s(`repeats.${groups}`, [groups, 1])], `${hint}.causal_rows`),
          ],
          `${hint}.logits_new_masked`,
        );
    groupedLogits = g.op(
      'Concat',
      [logitsOver(past.keys, `${hint}.logits_past`), ownMasked],
      `${hint}.logits_grouped`,
      { axis: -1 },
    );
  } else {
    groupedLogits = logitsOver(newKeys, `${hint}.logits_grouped`);
  }
  const logits = byHead(groupedLogits, 0, `${hint}.logits`);
  const biased = options.logSizes ? g.op('Add', [logits, options.logSizes], `${hint}.size_biased`) : logits;
  const mask = past ? past.mask : causal;
  const masked = mask ? g.op('Add', [biased, mask], `${hint}.masked`) : biased;
  const probs = g.op('Softmax', [masked], `${hint}.probs`, { axis: -1 });
  const groupedProbs = byKvHead(probs, 0, `${hint}.probs_grouped`);
  let groupedContext: string;
  if (past) {
    // The probabilities' columns over the cache and over the run, split by their key counts.
    const keyCount = (keys: string, name: string) => g.op('Shape', [keys], name, { start: 1, end: 2 });
    const [pastProbs, newProbs] = g.opMulti(
      'Split',
      [
        groupedProbs,
        g.op(
          'Concat',
          [keyCount(past.keys, `${hint}.past_count`), keyCount(newKeys, `${hint}.new_count`)],
          `${hint}.key_counts`,
          { axis: 0 },
        ),
      ],
      [`${hint}.probs_past`, `${hint}.probs_new`],
      { axis: -1 },
    );
    groupedContext = g.op(
      'Add',
      [
        g.op('MatMul', [pastProbs, past.values], `${hint}.ctx_past`),
        g.op('MatMul', [newProbs, newValues], `${hint}.ctx_new`),
      ],
      `${hint}.ctx_grouped`,
    );
  } else {
    groupedContext = g.op('MatMul', [groupedProbs, newValues], `${hint}.ctx_grouped`);
  }
  const headsContext = byHead(groupedContext, headDim, `${hint}.ctx_h`);
  return { context: mergeHeads(g, headsContext, `${hint}.ctx`), logits, probs };
}

/**
 * Causal attention over the cache and the run's tokens as ONNX Runtime's GroupQueryAttention (com.microsoft): no
 * [heads, tokens, keys] tensors between ops. The cache's first `seqlens_k + 1 − tokens` slots are in use — the slots
 * the mask leaves at 0 — and it goes in as [1, kvHeads, those slots, headDim]; the queries as [1, tokens, heads·headDim].
 */
function groupQueryAttention(
  g: GraphBuilder,
  queries: string,
  keys: string,
  values: string,
  past: PastKeysValues,
  { heads, kvHeads, headDim }: AttentionShape,
  hint: string,
): string {
  const batch = (x: string, name: string) => g.op('Unsqueeze', [x, g.int64s('axes.0', [0])], name);
  const rows = (x: string, name: string) => batch(mergeHeads(g, x, `${name}.rows`), name);
  const inUse = g.op(
    'ReduceSum',
    [
      g.op('Cast', [g.op('Equal', [past.mask, g.scalar('zero', 0)], `${hint}.in_use`)], `${hint}.in_use_i`, {
        to: ElemType.int32,
      }),
      g.int64s('axes.0', [0]),
    ],
    `${hint}.keys_in_use`,
    { keepdims: 1 },
  );
  // ONNX Runtime from 1.31 takes a past without spare slots (total keys = past + new), so those are sliced off.
  const cached = g.op(
    'Sub',
    [
      g.op('Cast', [inUse], `${hint}.keys_in_use_i64`, { to: ElemType.int64 }),
      g.op('Shape', [keys], `${hint}.new_keys`, { start: 1, end: 2 }),
    ],
    `${hint}.cached_keys`,
  );
  const inUsePrefix = (x: string, name: string) =>
    batch(g.op('Slice', [x, g.int64s('starts.0', [0]), cached, g.int64s('axes.1', [1])], `${name}.in_use`), name);
  const [context] = g.opMulti(
    'GroupQueryAttention',
    [
      rows(queries, `${hint}.gqa_q`),
      rows(keys, `${hint}.gqa_k`),
      rows(values, `${hint}.gqa_v`),
      inUsePrefix(past.keys, `${hint}.gqa_past_k`),
      inUsePrefix(past.values, `${hint}.gqa_past_v`),
      g.op('Sub', [inUse, g.constant('i32.1', Int32Array.of(1), [1])], `${hint}.seqlens_k`),
      g.op('Squeeze', [inUse, g.int64s('axes.0', [0])], `${hint}.total_keys`),
    ],
    [`${hint}.gqa`, `${hint}.gqa_present_k`, `${hint}.gqa_present_v`],
    { num_heads: heads, kv_num_heads: kvHeads, scale: { float: 1 / Math.sqrt(headDim) } },
    'com.microsoft',
  );
  return g.op('Squeeze', [context, g.int64s('axes.0', [0])], `${hint}.gqa_ctx`);
}
