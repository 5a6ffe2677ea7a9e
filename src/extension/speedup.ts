/**
 * The speedup users see is measured, never estimated: the reduced answer's prefill (vision + language model)
 * against the same model's unreduced prefill on the same provider and image sizes, measured once and kept.
 * Free of 'vscode': the store is any key-value memento.
 */
import type { AnswerStats } from '../protocol/engine';

/**
 * One prefill-only run of the question just answered, without reduction (`reduced` false) or with it; undefined once
 * cancelled.
 */
export type PrefillRun = (reduced: boolean) => Promise<Pick<AnswerStats, 'visionMs' | 'prefillMs'> | undefined>;

export interface BaselineStore {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): Thenable<void> | Promise<void>;
}

/** What a baseline depends on: the model folder, the provider it ran on, and the images' sizes. */
export function baselineKey(
  modelDir: string,
  provider: string,
  imageSizes: readonly { width: number; height: number }[],
): string {
  return `ficoco.baseline/${provider}/${imageSizes.map(({ width, height }) => `${width}x${height}`).join('+')}/${modelDir}`;
}

export class Baselines {
  constructor(private readonly store: BaselineStore) {}

  /** Unreduced prefill ms, when measured. */
  get(key: string): number | undefined {
    const value = this.store.get<number>(key);
    return typeof value === 'number' && value > 0 ? value : undefined;
  }

  async set(key: string, prefillMs: number): Promise<void> {
    await this.store.update(key, prefillMs);
  }
}

/** Vision + language-model prefill of an answer, in ms. */
export function prefillMs(stats: Pick<AnswerStats, 'visionMs' | 'prefillMs'>): number {
  return stats.visionMs + stats.prefillMs;
}

/** Analytic prefill FLOPs of the run over the unreduced prompt's. */
export function flopsRatio(stats: Pick<AnswerStats, 'flops'>): number {
  return stats.flops.unreduced.total > 0 ? stats.flops.run.total / stats.flops.unreduced.total : 1;
}

/**
 * The measured speedup of a reduced answer whose prefill took `reducedMs`: against the baseline under `key`, measured
 * first when there is none (twice, keeping the faster: the first unreduced run of a session also warms memory up), and
 * then the reduced prefill once more, warm (the answer may have been the session's first reduced run, not yet compiled
 * by V8). Undefined when a run was cancelled; a failed run rejects, and the caller keeps the answer as it is.
 */
export async function measureSpeedup(
  run: PrefillRun,
  baselines: Baselines,
  key: string,
  reducedMs: number,
): Promise<number | undefined> {
  let baseline = baselines.get(key);
  let reduced = reducedMs;
  if (baseline === undefined) {
    const runs: number[] = [];
    for (let i = 0; i < 2; i++) {
      const stats = await run(false);
      if (!stats) return undefined;
      runs.push(prefillMs(stats));
    }
    baseline = Math.min(...runs);
    await baselines.set(key, baseline);
    const warm = await run(true);
    if (!warm) return undefined;
    reduced = Math.min(reduced, prefillMs(warm));
  }
  return baseline / Math.max(reduced, 1e-3);
}
