/**
 * The speedup users see is measured, never estimated: after a reduced answer, prefill-only runs of the same question
 * alternate between the unreduced model and the reduction, warm, and the speedup is the median ratio of neighbouring
 * runs — so a busy machine slows both sides of a pair alike. Kept per model, provider, the images' cost and the
 * reduction.
 * Free of 'vscode': the store is any key-value memento.
 */
import type { SpeedupVerdict, SpeedupView } from '../protocol/webview';

/** One prefill-only run of the question just answered, unreduced or reduced: its prefill ms, undefined once cancelled. */
export type PrefillRun = (reduced: boolean) => Promise<number | undefined>;

/** How many pairs to time: at least `minPairs`, more while they fit in `targetMs`, at most `maxPairs`. */
export interface PairPlan {
  minPairs: number;
  maxPairs: number;
  targetMs: number;
  /**
   * a warm-up pair whose runs each took this long counts as the first pair: what a warm-up absorbs (compiling code,
   * first allocations; sessions are built outside the timed prefill) is then a small share of a run
   */
  warmPairCountsFromMs: number;
}

/**
 * Five pairs of a large model's seconds-long prefills (the fewest a sign test can decide), its warm-up pair among them
 * (a 1920 × 1080 screenshot on a CPU: minutes a pair); up to 61 of milliseconds.
 */
export const DEFAULT_PAIR_PLAN: PairPlan = { minPairs: 5, maxPairs: 61, targetMs: 3000, warmPairCountsFromMs: 5000 };

/** Within this much of 1× reduction made no difference worth a figure. */
const SAME_SPEED_MARGIN = 0.05;
/** One-sided significance of the sign test that says the reduced run wins (or loses) more pairs than chance would. */
const SIGN_TEST_ALPHA = 0.05;

export interface SpeedupStore {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): Thenable<void> | Promise<void>;
}

/** What a measurement depends on: the model folder, the provider it ran on, what the images cost and the reduction. */
export interface SpeedupSubject {
  /** what measured it: the engine's load (folder, quantization, threads: loadKey), or the server's address */
  engine: string;
  provider: string;
  /**
   * each image's visual tokens before reduction, and the vision tower's analytic FLOPs for all of them (which count a
   * tiled image's passes): not their pixel sizes, which LLaVA-1.5 reads all alike as 576 tokens
   */
  images: { visualTokens: readonly number[]; visionFlops: number };
  reduction: { method: string; budget: string; params: Readonly<Record<string, unknown>> };
}

/** Measurements kept across sessions, under a key that names everything they depend on. */
export class SpeedupCache {
  /** `version`: the extension's, so a new engine is measured afresh */
  constructor(
    private readonly store: SpeedupStore,
    private readonly version: string,
  ) {}

  key(subject: SpeedupSubject): string {
    const { engine, provider, images, reduction } = subject;
    const cost = `${images.visualTokens.join('+')}@${images.visionFlops}`;
    const params = JSON.stringify(Object.entries(reduction.params).sort(([a], [b]) => a.localeCompare(b)));
    return `ficoco.speedup/${this.version}/${provider}/${cost}/${reduction.method}/${reduction.budget}/${params}/${engine}`;
  }

  get(subject: SpeedupSubject): SpeedupView | undefined {
    const value = this.store.get<SpeedupView>(this.key(subject));
    return value && typeof value === 'object' && typeof value.ratio === 'number' ? value : undefined;
  }

  async set(subject: SpeedupSubject, speedup: SpeedupView): Promise<void> {
    await this.store.update(this.key(subject), speedup);
  }
}

/**
 * Times one warm-up run of each side (discarded unless both took `plan.warmPairCountsFromMs`: the first runs compile
 * code), then pairs in alternating order, telling `onPairs` how many are done of how many (from the warm-up's count,
 * once it is over: minutes on a CPU for a large screenshot); undefined when a run was cancelled. A failed run rejects.
 */
export async function measureSpeedup(
  run: PrefillRun,
  timed: string,
  plan: PairPlan = DEFAULT_PAIR_PLAN,
  onPairs?: (done: number, pairs: number) => void,
): Promise<SpeedupView | undefined> {
  const warmFull = await run(false);
  const warmReduced = warmFull === undefined ? undefined : await run(true);
  if (warmFull === undefined || warmReduced === undefined) return undefined;
  const fitting = Math.floor(plan.targetMs / Math.max(warmFull + warmReduced, 1e-3));
  const pairs = Math.min(plan.maxPairs, Math.max(plan.minPairs, fitting));
  const ratios = Math.min(warmFull, warmReduced) >= plan.warmPairCountsFromMs ? [warmFull / warmReduced] : [];
  onPairs?.(ratios.length, pairs);
  // The warm-up ran the full side first, as pair 0 does.
  for (let i = ratios.length; i < pairs; i++) {
    // Alternating which side goes first cancels any advantage of running second (caches, clocks).
    const [first, second] = i % 2 === 0 ? [false, true] : [true, false];
    const a = await run(first);
    const b = a === undefined ? undefined : await run(second);
    if (a === undefined || b === undefined) return undefined;
    const [full, reduced] = first ? [b, a] : [a, b];
    ratios.push(full / Math.max(reduced, 1e-3));
    onPairs?.(i + 1, pairs);
  }
  return speedupView(ratios, timed);
}

/**
 * The median of paired ratios (unreduced ms / reduced ms), its noise band (the middle half), verdict and wording.
 * A verdict needs both a median past the margin and a sign test: the band is how noisy single pairs are, not how
 * sure the median is, and a band that grazes 1× would flip the figure from run to run.
 */
export function speedupView(ratios: readonly number[], timed: string): SpeedupView {
  const sorted = [...ratios].sort((a, b) => a - b);
  const ratio = quantile(sorted, 0.5);
  const low = quantile(sorted, 0.25);
  const high = quantile(sorted, 0.75);
  const won = ratios.filter((r) => r > 1).length;
  const lost = ratios.filter((r) => r < 1).length;
  const verdict: SpeedupVerdict =
    ratio >= 1 + SAME_SPEED_MARGIN && signTestP(won, won + lost) <= SIGN_TEST_ALPHA
      ? 'faster'
      : ratio <= 1 - SAME_SPEED_MARGIN && signTestP(lost, won + lost) <= SIGN_TEST_ALPHA
        ? 'slower'
        : 'same';
  return { ratio, low, high, pairs: ratios.length, verdict, label: speedupLabel(ratio, verdict), timed };
}

/** "1.8× faster"; never a ratio below 1 worded as a speedup. */
function speedupLabel(ratio: number, verdict: SpeedupVerdict): string {
  if (verdict === 'faster') return `${ratio.toFixed(1)}× faster`;
  if (verdict === 'slower') return `${ratio.toFixed(1)}× — slower than full tokens on this model`;
  return '≈1× — no faster than full tokens on this model';
}

/** P(X ≥ k) for X ~ Binomial(n, ½): the chance of winning k or more of n untied pairs by luck alone. */
function signTestP(k: number, n: number): number {
  let term = 0.5 ** n; // C(n, 0) / 2^n, then C(n, i) / 2^n by C(n, i) = C(n, i − 1) · (n − i + 1) / i
  let below = 0;
  for (let i = 0; i < k; i++) {
    below += term;
    term = (term * (n - i)) / (i + 1);
  }
  return Math.max(0, 1 - below);
}

/** Linear interpolation between the sorted values around quantile q. */
function quantile(sorted: readonly number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const below = Math.floor(at);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (at - below);
}

/** Vision + language-model prefill of an answer, in ms. */
export function prefillMs(stats: { visionMs: number; prefillMs: number }): number {
  return stats.visionMs + stats.prefillMs;
}

/** Analytic prefill FLOPs of the run over the unreduced prompt's. */
export function flopsRatio(stats: { flops: { run: { total: number }; unreduced: { total: number } } }): number {
  return stats.flops.unreduced.total > 0 ? stats.flops.run.total / stats.flops.unreduced.total : 1;
}
