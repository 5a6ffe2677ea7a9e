import type { Budget } from '../common/budget';
import { FicocoError, shortJson } from '../common/errors';
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
  | { type: 'enum'; default: string; values: readonly string[]; description: string }
  /** numbers of 0 or more separated by commas, carried as text (NUMBER_LIST_PATTERN); empty: none */
  | { type: 'list'; default: string; description: string };

/** A bad method name, parameter or budget; the message says what is accepted. */
export class ReductionSettingsError extends FicocoError {
  override name = 'ReductionSettingsError';

  constructor(message: string) {
    super(message, 'reduction');
  }
}

/** One entry of a list parameter: a decimal number of 0 or more (42, 0.5, .5). */
const LIST_ENTRY = '(\\d+(\\.\\d*)?|\\.\\d+)';
const LIST_ENTRY_ONLY = new RegExp(`^${LIST_ENTRY}$`);
const NEGATIVE_ENTRY = new RegExp(`^-${LIST_ENTRY}$`);

/** A list parameter as a JSON-schema pattern (package.json's setting): empty, or entries separated by commas. */
export const NUMBER_LIST_PATTERN = `^\\s*(${LIST_ENTRY}(\\s*,\\s*${LIST_ENTRY})*)?\\s*$`;

/** What is wrong with one entry of a list parameter; undefined for a number of 0 or more. */
function entryProblem(entry: string): string | undefined {
  if (entry === '') return 'an entry is empty';
  if (NEGATIVE_ENTRY.test(entry)) return `${shortJson(entry)} is negative`;
  if (!LIST_ENTRY_ONLY.test(entry)) return `${shortJson(entry)} is not a number`;
  if (!Number.isFinite(Number(entry))) return `${shortJson(entry)} is too large`;
  return undefined;
}

/**
 * A list parameter's numbers ([] when empty): a schedule's shares, one per reducing layer, 0 or more and not all 0;
 * a lone number (as `--param name=3` types it) is a list of one. `where` names the parameter in the refusal.
 */
export function parseNumberList(value: unknown, where: string): number[] {
  const text = typeof value === 'number' ? String(value) : value;
  const refuse = (problem: string) =>
    new ReductionSettingsError(
      `${where} is ${shortJson(value)}: ${problem}; give a share of 0 or more per reducing layer, separated by ` +
        'commas (e.g. 3,2,1), or leave it empty for an even schedule.',
    );
  if (typeof text !== 'string') throw refuse('not text');
  if (text.trim() === '') return [];
  const entries = text.split(',').map((entry) => entry.trim());
  const problem = entries.map(entryProblem).find((found) => found !== undefined);
  if (problem !== undefined) throw refuse(problem);
  const shares = entries.map(Number);
  if (shares.every((share) => share === 0)) throw refuse('every entry is 0, so no layer would remove a token');
  return shares;
}

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

/**
 * The layers from `first` to `last` that reduce and what each removes, `total` in all: every layer evenly
 * (evenRemovals) without a schedule (a list parameter's text), else as many layers as it has shares, in proportion
 * to them. `param` names the schedule in the refusal of one longer than the layers.
 */
export function scheduledRemovals(
  first: number,
  last: number,
  total: number,
  schedule: string,
  param: string,
): { layers: number[]; removals: number[] } {
  const shares = parseNumberList(schedule, param);
  const available = layerRange(first, last);
  if (shares.length === 0) return { layers: available, removals: evenRemovals(total, available.length) };
  if (shares.length > available.length)
    throw new ReductionSettingsError(
      `${param} has ${shares.length} shares, but this model reduces at most ${available.length} layers from its ` +
        `start, layer ${first} (${first}…${last}): give at most ${available.length}, or start earlier.`,
    );
  return { layers: available.slice(0, shares.length), removals: inProportion(total, shares) };
}

/**
 * `total` in whole numbers in proportion to `weights`, adding up to it: floors first, then one more by largest
 * remainder.
 */
export function inProportion(total: number, weights: readonly number[]): number[] {
  const weight = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (weight > 0 ? (total * w) / weight : 0));
  const parts = exact.map(Math.floor);
  const short = total - parts.reduce((a, b) => a + b, 0);
  const byRemainder = parts.map((_, p) => p).sort((a, b) => exact[b] - parts[b] - (exact[a] - parts[a]) || a - b);
  for (const p of byRemainder.slice(0, short)) parts[p]++;
  return parts;
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
