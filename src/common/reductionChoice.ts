/**
 * How the reduction of an answer was chosen. `ficoco.reduction.method` (and `--method` on the command line) may be
 * `auto`: the engine then takes the model folder's measured recommendation (`ficoco tune`), else the setting
 * published for the model's architecture, else FiCoCo's default.
 */

import type { Budget, ParamValue } from './budget';

/**
 * A reduction as asked for: a method of the registry with its budget and parameters, or `auto` (the model's
 * recommendation; budget and parameters unused). The engine checks them against the registry.
 */
export interface ReductionRequest {
  method: string;
  /** required except with `auto`, whose recommendation sets it */
  budget?: Budget;
  /** the method's parameters; its defaults where absent */
  params?: Readonly<Record<string, ParamValue>>;
}

/** The method name that asks the engine to choose. */
export const AUTO_METHOD = 'auto';

/** Which rule chose: the user's own setting, the model's measured recommendation, a published one, or the default. */
export type ReductionRule = 'setting' | 'model' | 'published' | 'default';
export const REDUCTION_RULES: readonly ReductionRule[] = ['setting', 'model', 'published', 'default'];

/** The rule in a few words, for a stats line ("measured for this model"). */
export const RULE_LABELS: Record<ReductionRule, string> = {
  setting: 'your setting',
  model: 'measured for this model',
  published: 'published for this model',
  default: 'default',
};

/** The method name for no reduction: every visual token reaches the language model. */
export const NO_REDUCTION = 'none';
