import { selectRows } from './arrays';

/**
 * Where a reduction hook runs: `vision:<l>` inside vision layer l (after the attention residual,
 * before the MLP); `features` on the vision tower's output before the projector ([CLS] still at
 * index 0, the last layer's attention available); `projector` on the projected features of one tower
 * pass; `packed` on an image's projected features as the decoder will read them (a tiled image's passes
 * packed into one sequence, its row ends set aside; it offers only the hidden cosine); `llm:<l>` inside
 * decoder layer l (after the attention residual; that layer's KV cache already holds every token that
 * entered it).
 */
export type HookSite = `vision:${number}` | 'features' | 'projector' | 'packed' | `llm:${number}`;

/** Which part of a run a site belongs to: the vision tower (projector included), the packed image, the decoder. */
export function siteStage(site: HookSite): 'tower' | 'packed' | 'decoder' {
  return site === 'packed' ? 'packed' : site.startsWith('llm:') ? 'decoder' : 'tower';
}

/** One image's tokens inside the sequence a hook sees. */
export interface VisualSpan {
  /** index of the span's first token in the sequence */
  start: number;
  count: number;
  /** the image's patch grid (rows × cols original patches) */
  grid: { rows: number; cols: number };
  /** per original patch (raster order): the sequence index of the token that holds it now, or −1 once dropped */
  patchOwner: Int32Array;
  /** per token of the span: the original patch it started as (raster order), −1 for a token a method created */
  tokenPatch: Int32Array;
}

/** A sequence of tokens and what each stands for. Hooks return a new one; they never mutate their input. */
export interface TokenState {
  /** [count, width] row-major */
  hidden: Float32Array;
  count: number;
  width: number;
  /** per token: how many original patches it stands for (1 for text and [CLS]) */
  sizes: Float32Array;
  /** per token: the position id rotary embeddings use (kept tokens keep their original positions) */
  positions: Int32Array;
  /** the images' tokens, in sequence order; everything else is text (or [CLS] at vision sites) */
  spans: VisualSpan[];
}

export interface SiteView extends TokenState {
  site: HookSite;
  /** head-averaged attention of this layer [count, keyCount], when the hook asked for it */
  attention?: Float32Array;
  /** keys averaged over heads [keyCount, headDim], when asked for */
  meanKeys?: Float32Array;
  /** cos(h_i, h_j) of the hidden states [count, count], when asked for */
  hiddenCosine?: Float32Array;
  /** cos(k̄_i, k̄_j) of the head-averaged keys [keyCount, keyCount], when asked for */
  keyCosine?: Float32Array;
  /** number of keys the attention covers (the layer's whole KV length) */
  keyCount: number;
  /** true when index 0 is the vision tower's [CLS] token (vision sites of CLIP) */
  hasClassToken: boolean;
  /** at a tower site, which pass of its image this is: 0 the base image (an untiled one's only pass), then the tiles */
  pass?: number;
}

/** What a hook asks to see from the layer before it. */
export interface AttentionNeeds {
  /** head-averaged attention [queries, keys]: pre-softmax scaled logits or softmax probabilities */
  attention?: 'logits' | 'probs';
  /** keys averaged over heads [keys, headDim] (ToMe's similarity metric) */
  keys?: boolean;
  /** cosine similarity of the site's hidden states [count, count], computed by the engine as one matrix product */
  hiddenCosine?: boolean;
  /** cosine similarity of the head-averaged keys [keys, keys], computed by the engine as one matrix product */
  keyCosine?: boolean;
  /** from this site on, vision attention adds log(size) of each key to its logits (ToMe's proportional attention) */
  proportionalAttention?: boolean;
  /** on a tile of a tiled image, its tokens that see only padding (which unpadding cuts) go before the hook sees them */
  imageOnly?: boolean;
}

/** The contract between the engine and the reduction library: a function of the tokens at one site. */
export interface ReductionHook {
  site: HookSite;
  needs: AttentionNeeds;
  reduce(view: SiteView): TokenState;
  /**
   * a tiled image's passes at this tower site, reduced together (in pass order); where a hook has it, the engine runs
   * every pass to the site before any goes on
   */
  reducePasses?(views: readonly SiteView[]): TokenState[];
}

/** The sites a hook list touches, with what each needs; throws on an unknown or duplicate site. */
export function hooksBySite(hooks: readonly ReductionHook[]): Map<HookSite, ReductionHook> {
  const bySite = new Map<HookSite, ReductionHook>();
  for (const hook of hooks) {
    if (bySite.has(hook.site)) throw new Error(`two reduction hooks at ${hook.site}; combine them into one step`);
    bySite.set(hook.site, hook);
  }
  return bySite;
}

/** Checks a hook's output is a well-formed state before the engine feeds it on. */
export function validateTokenState(state: TokenState, site: HookSite, width: number): void {
  const fail = (what: string) => {
    throw new Error(`reduction hook at ${site} returned an invalid state: ${what}`);
  };
  if (state.width !== width) fail(`width ${state.width}, expected ${width}`);
  if (state.count < 1) fail('no tokens left');
  if (state.hidden.length !== state.count * width)
    fail(`hidden has ${state.hidden.length} values for ${state.count}×${width}`);
  if (state.sizes.length !== state.count) fail(`${state.sizes.length} sizes for ${state.count} tokens`);
  if (state.positions.length !== state.count) fail(`${state.positions.length} positions for ${state.count} tokens`);
  let previousEnd = 0;
  for (const span of state.spans) {
    if (span.start < previousEnd || span.start + span.count > state.count)
      fail(`visual span [${span.start}, ${span.start + span.count}) out of order or range`);
    if (span.tokenPatch.length !== span.count)
      fail(`span has ${span.tokenPatch.length} token patches for ${span.count} tokens`);
    for (const owner of span.patchOwner) {
      if (owner !== -1 && (owner < span.start || owner >= span.start + span.count))
        fail(`patch owner ${owner} outside its span`);
    }
    previousEnd = span.start + span.count;
  }
}

/** The tokens at sorted sequence indices `kept`, with sizes, positions and provenance carried along. */
export function selectTokens(state: TokenState, kept: ArrayLike<number>): TokenState {
  const { width } = state;
  const newIndex = new Int32Array(state.count).fill(-1);
  const sizes = new Float32Array(kept.length);
  const positions = new Int32Array(kept.length);
  for (let i = 0; i < kept.length; i++) {
    const from = kept[i];
    if (from < 0 || from >= state.count || (i > 0 && from <= kept[i - 1]))
      throw new Error(`selectTokens: kept indices must be sorted, unique and below ${state.count}`);
    newIndex[from] = i;
    sizes[i] = state.sizes[from];
    positions[i] = state.positions[from];
  }
  const hidden = selectRows(state.hidden, width, kept);
  const spans = state.spans.map((span) => {
    let start = 0;
    while (start < kept.length && kept[start] < span.start) start++;
    let end = start;
    while (end < kept.length && kept[end] < span.start + span.count) end++;
    const tokenPatch = Int32Array.from(
      { length: end - start },
      (_, i) => span.tokenPatch[kept[start + i] - span.start],
    );
    return {
      start,
      count: end - start,
      grid: span.grid,
      patchOwner: span.patchOwner.map((owner) => (owner < 0 ? -1 : newIndex[owner])),
      tokenPatch,
    };
  });
  return { hidden, count: kept.length, width, sizes, positions, spans };
}
