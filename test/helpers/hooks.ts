import { HookSite, ReductionHook, TokenState, selectTokens } from '../../src/reduction/tokenState';

/**
 * The trivial hook the engine tests use: keeps every non-visual token and the visual tokens at even offsets in their
 * span.
 */
export function keepEveryOtherVisualToken(site: HookSite): ReductionHook {
  return {
    site,
    needs: {},
    reduce(view): TokenState {
      const kept: number[] = [];
      for (let i = 0; i < view.count; i++) {
        const span = view.spans.find((s) => i >= s.start && i < s.start + s.count);
        if (!span || (i - span.start) % 2 === 0) kept.push(i);
      }
      return selectTokens(view, kept);
    },
  };
}
