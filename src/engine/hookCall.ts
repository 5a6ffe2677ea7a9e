/**
 * A reduction hook as the engine calls it: what it sees of the state a segment left, its step checked and recorded,
 * and, read from the bookkeeping the steps kept, what became of each patch.
 */
import type * as ort from 'onnxruntime-node';
import { ATTENTION, HIDDEN_COSINE, KEY_COSINE, MEAN_KEYS } from './graph/segment';
import {
  type ReductionHook,
  type SiteView,
  type TokenState,
  type VisualSpan,
  validateTokenState,
} from '../reduction/tokenState';
import type { PatchFates, StepStat } from './api';
import { startClock } from './clock';
import { withoutStructure } from './structureTokens';

/**
 * What a hook is told besides the tokens: `hasClassToken` says index 0 is a class token, `image` and `pass` which image
 * and tower pass a vision-side step reduced, `drop` which tokens go before the hook sees them; its step is recorded in
 * `steps`.
 */
export interface HookContext {
  steps: StepStat[];
  hasClassToken: boolean;
  image?: number;
  pass?: number;
  structure?: Uint8Array;
  /** the outputs were gathered over the tokens `structure` leaves (GatheredExposure's `content`) */
  signalsOverContent?: boolean;
  drop?: Uint8Array;
}

/** Calls a hook on the state a segment left, with the attention it asked for, and records the step. */
export function runHook(
  hook: ReductionHook,
  state: TokenState,
  outputs: ort.InferenceSession.OnnxValueMapType,
  context: HookContext,
): { state: TokenState; structure?: Uint8Array } {
  const at = hookView(hook, state, outputs, context);
  const clock = startClock();
  const reduced = hook.reduce(at.view);
  return at.finish(reduced, clock());
}

/**
 * What a hook sees of the state a segment left (its signals, structure tokens set aside), and how its result goes back:
 * checked, recorded, structure restored.
 */
export function hookView(
  hook: ReductionHook,
  state: TokenState,
  outputs: ort.InferenceSession.OnnxValueMapType,
  context: HookContext,
): {
  view: SiteView;
  finish(reduced: TokenState, time: { ms: number; cpuMs: number }): { state: TokenState; structure?: Uint8Array };
} {
  const { steps, hasClassToken, image, pass, structure, signalsOverContent, drop } = context;
  const attention = outputs[ATTENTION]?.data as Float32Array | undefined;
  const meanKeys = outputs[MEAN_KEYS]?.data as Float32Array | undefined;
  const keyCount =
    outputs[ATTENTION]?.dims[1] ?? outputs[KEY_COSINE]?.dims[0] ?? outputs[MEAN_KEYS]?.dims[0] ?? state.count;
  const hiddenCosine = outputs[HIDDEN_COSINE]?.data as Float32Array | undefined;
  const keyCosine = outputs[KEY_COSINE]?.data as Float32Array | undefined;
  const full: SiteView = {
    ...state,
    site: hook.site,
    attention,
    meanKeys,
    hiddenCosine,
    keyCosine,
    keyCount,
    hasClassToken,
    pass,
  };
  // Structure tokens (row ends) are taken out of what the method sees, and put back after it; `drop` tokens stay out.
  const content = structure?.includes(1) ? withoutStructure(full, structure, { signalsOverContent }) : undefined;
  const view = content?.view ?? (drop?.includes(1) ? withoutStructure(full, drop).view : full);
  const finish = (reduced: TokenState, { ms, cpuMs }: { ms: number; cpuMs: number }) => {
    validateTokenState(reduced, hook.site, state.width);
    const visual = (s: TokenState) => s.spans.reduce((sum, span) => sum + span.count, 0);
    steps.push({
      site: hook.site,
      ...(image !== undefined ? { image } : {}),
      tokensBefore: visual(view),
      tokensAfter: visual(reduced),
      ms,
      cpuMs,
    });
    return content ? content.restore(reduced) : { state: reduced, structure };
  };
  return { view, finish };
}

/** Per token of `state`, 1 when it holds one of the marked patches (its first span's). */
export function tokensOn(state: TokenState, patches: Uint8Array): Uint8Array {
  const marked = new Uint8Array(state.count);
  const [span] = state.spans;
  span.tokenPatch.forEach((patch, t) => (marked[span.start + t] = patch >= 0 ? patches[patch] : 0));
  return marked;
}

/**
 * Each patch's fate from the span's bookkeeping: no owner = dropped; an owner that started as another patch (or was
 * created) = merged.
 */
export function patchFates(span: VisualSpan): PatchFates {
  const fates = Array.from(span.patchOwner, (owner, patch) =>
    owner < 0 ? 'd' : span.tokenPatch[owner - span.start] === patch ? 'k' : 'm',
  );
  return { rows: span.grid.rows, cols: span.grid.cols, patches: fates.join('') };
}
