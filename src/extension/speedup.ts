/**
 * The speedup users see is measured, never estimated: the reduced answer's prefill (vision + language model)
 * against the same model's unreduced prefill on the same provider and image sizes, measured once and kept.
 * Free of 'vscode': the store is any key-value memento.
 */
import type { AnswerStats } from '../protocol/engine';

export interface BaselineStore {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): Thenable<void> | Promise<void>;
}

/** What a baseline depends on: the model folder, the provider it ran on, and the images' sizes. */
export function baselineKey(modelDir: string, provider: string, imageSizes: readonly { width: number; height: number }[]): string {
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
