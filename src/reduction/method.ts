import type { Budget } from '../common/budget';
import { Step, StepParams } from './paradigm';

/** What a method needs to know about the model to place its steps. */
export interface ModelShape {
  /** vision layers that run (0 … visionLayers−1; the last one produces the features) */
  visionLayers: number;
  textLayers: number;
  /** visual tokens one image gives the decoder without reduction */
  visualTokens: number;
  grid: { rows: number; cols: number };
  /** the vision tower has a [CLS] token at index 0 */
  hasClassToken: boolean;
}

/** One parameter of a method: settings and the CLI are generated from these. */
export type ParamSpec =
  | { type: 'number' | 'integer'; default: number; min: number; max: number; description: string }
  | { type: 'boolean'; default: boolean; description: string }
  | { type: 'enum'; default: string; values: readonly string[]; description: string };

export interface Method {
  name: string;
  /** one line for pickers and help */
  description: string;
  /**
   * where it comes from, and where this implementation departs from the paper or its usual reimplementation (`ficoco
   * methods --verbose`)
   */
  reference: string;
  params: Record<string, ParamSpec>;
  /** The steps that take one image from `model.visualTokens` to `keep` visual tokens. */
  plan(model: ModelShape, keep: number, params: StepParams): Step[];
}

/** A method's parameter values, typed from its schema. */
export type ParamsOf<S extends Record<string, ParamSpec>> = { [K in keyof S]: S[K]['default'] };

/**
 * A method file's one export: its schema, and a plan whose parameters are typed by it (a composite method may return
 * the steps of the methods it composes).
 */
export function defineMethod<S extends Record<string, ParamSpec>>(
  definition: Omit<Method, 'params' | 'plan'> & {
    params: S;
    plan(model: ModelShape, keep: number, params: ParamsOf<S>): Step<ParamsOf<S>>[] | Step[];
  },
): Method {
  // The registry checks every parameter against the schema (resolveParams) before a plan runs, so the casts hold.
  return {
    ...definition,
    plan: (model, keep, params) => definition.plan(model, keep, params as ParamsOf<S>) as unknown as Step[],
  };
}

/** Visual tokens to keep per image for a budget, at least one and at most all. */
export function keptTokens(budget: Budget, visualTokens: number): number {
  const wanted = 'tokens' in budget ? budget.tokens : Math.round(budget.ratio * visualTokens);
  return Math.max(1, Math.min(visualTokens, Math.round(wanted)));
}

/** Removes `total` tokens over `steps` steps as evenly as possible, earlier steps taking the extra one. */
export function evenRemovals(total: number, steps: number): number[] {
  if (steps <= 0) return [];
  const base = Math.floor(total / steps);
  return Array.from({ length: steps }, (_, i) => base + (i < total % steps ? 1 : 0));
}

/** Removals that keep the same fraction at each of `steps` steps, ending exactly at `keep` (PDrop, EViT). */
export function geometricRemovals(start: number, keep: number, steps: number): number[] {
  const removals: number[] = [];
  let current = start;
  for (let i = 1; i <= steps; i++) {
    const next = i === steps ? keep : Math.round(start * (keep / start) ** (i / steps));
    removals.push(current - next);
    current = next;
  }
  return removals;
}

/** Layer index at a fraction of a depth, clamped into [0, layers − 1]. */
export function layerAt(fraction: number, layers: number): number {
  return Math.max(0, Math.min(layers - 1, Math.round(fraction * layers)));
}

/** Consecutive layers from `first` to `last`, inclusive (empty when first > last). */
export function layerRange(first: number, last: number): number[] {
  return Array.from({ length: Math.max(0, last - first + 1) }, (_, i) => first + i);
}
