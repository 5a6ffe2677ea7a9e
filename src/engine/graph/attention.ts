import type { AttentionNeeds } from '../../reduction/tokenState';
import { GraphBuilder } from './builder';
import { Linear, applyRotary, causalBias, linear, mergeHeads, splitHeads } from './ops';

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
}

export interface AttentionOptions {
  rotary?: { cos: string; sin: string };
  /**
   * cached keys / values [kvHeads, slots, headDim] and an additive mask [slots + tokens] that hides the slots not in
   * use (0 or the lowest float; 0 for this run's tokens): the cache keeps spare slots so that a step writes only its
   * new rows
   */
  past?: PastKeysValues;
  causal: boolean;
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
  let queries = splitHeads(g, linear(g, x, w.q, `${hint}.q_proj`), heads, headDim, `${hint}.q`);
  let keys = splitHeads(g, linear(g, x, w.k, `${hint}.k_proj`), kvHeads, headDim, `${hint}.k`);
  let values = splitHeads(g, linear(g, x, w.v, `${hint}.v_proj`), kvHeads, headDim, `${hint}.v`);
  if (options.rotary) {
    queries = applyRotary(g, queries, options.rotary, headDim, `${hint}.q_rope`);
    keys = applyRotary(g, keys, options.rotary, headDim, `${hint}.k_rope`);
  }
  const [newKeys, newValues] = [keys, values];
  if (options.past) {
    keys = g.op('Concat', [options.past.keys, keys], `${hint}.keys`, { axis: 1 });
    values = g.op('Concat', [options.past.values, values], `${hint}.values`, { axis: 1 });
  }
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
  const logits = byHead(
    g.op(
      'MatMul',
      [
        byKvHead(scaledQueries, headDim, `${hint}.q_grouped`),
        g.op('Transpose', [keys], `${hint}.kT`, { perm: [0, 2, 1] }),
      ],
      `${hint}.logits_grouped`,
    ),
    0,
    `${hint}.logits`,
  );
  const biased = options.logSizes ? g.op('Add', [logits, options.logSizes], `${hint}.size_biased`) : logits;
  // The causal mask [tokens, keys] and the unused cache slots' mask [keys] meet before they reach [heads, tokens, keys].
  const causal = options.causal ? causalBias(g, queries, keys, `${hint}.mask`) : undefined;
  const mask =
    causal && options.past
      ? g.op('Add', [causal, options.past.mask], `${hint}.slot_mask`)
      : (causal ?? options.past?.mask);
  const masked = mask ? g.op('Add', [biased, mask], `${hint}.masked`) : biased;
  const probs = g.op('Softmax', [masked], `${hint}.probs`, { axis: -1 });
  const headsContext = byHead(
    g.op('MatMul', [byKvHead(probs, 0, `${hint}.probs_grouped`), values], `${hint}.ctx_grouped`),
    headDim,
    `${hint}.ctx_h`,
  );
  const context = mergeHeads(g, headsContext, `${hint}.ctx`);
  const out = linear(g, context, w.o, `${hint}.out`);

  const result: AttentionResult = { out, newKeys, newValues };
  const exposure = options.expose ?? {};
  // With a cache, a run sees only some of the prompt's queries (a chunk): what it exposes is its rows, which the engine
  // gathers over the chunks. Causal probabilities are complete per row; unmasked logits reach keys not yet computed,
  // so the run gives their two factors instead, mean_h q_h·k_h = (Σ_kv Σ_{h∈kv} q_h / heads)·k_kv.
  if (exposure.attention === 'logits' && options.past) {
    const summed =
      groups === 1
        ? scaledQueries
        : g.op(
            'ReduceSum',
            [
              g.op(
                'Reshape',
                [scaledQueries, g.int64s(`shape.groups.${kvHeads}.${groups}`, [kvHeads, groups, -1, headDim])],
                `${hint}.q_groups`,
              ),
              g.int64s('axes.1', [1]),
            ],
            `${hint}.q_group_sums`,
            { keepdims: 0 },
          );
    const scaled = g.op('Mul', [summed, g.scalar(`scale.heads.${heads}`, 1 / heads)], `${hint}.q_head_mean`);
    result.queryRows = mergeHeads(g, scaled, `${hint}.query_rows`);
    result.keyRows = mergeHeads(g, newKeys, `${hint}.key_rows`);
  } else if (exposure.attention) {
    const source = exposure.attention === 'logits' ? logits : probs;
    result.attention = g.op('ReduceMean', [source], `${hint}.attention_mean`, { axes: [0], keepdims: 0 });
  }
  if (exposure.keys || exposure.keyCosine) {
    // With a cache, the run's own rows (the engine gathers them); without one, newKeys are all the keys.
    result.meanKeys = g.op('ReduceMean', [newKeys], `${hint}.keys_mean`, { axes: [0], keepdims: 0 });
  }
  return result;
}
