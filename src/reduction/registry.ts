import { Method, ModelShape, ReductionSettingsError, keptTokens, parseNumberList } from './method';
import { BUDGET_HINT, Budget, ParamValue, isValidBudget, readableBudget } from '../common/budget';
import type { Size } from '../common/anyres';
import { dart } from './methods/dart';
import { divPrune } from './methods/divprune';
import { evit } from './methods/evit';
import { fasterVLM } from './methods/fastervlm';
import { fastv } from './methods/fastv';
import { ficocoL } from './methods/ficocoL';
import { ficocoV } from './methods/ficocoV';
import { ficocoVL } from './methods/ficocoVL';
import { pdrop } from './methods/pdrop';
import { pooling } from './methods/pooling';
import { pruMergePlus } from './methods/prumergePlus';
import { random } from './methods/random';
import { sparsevlm } from './methods/sparsevlm';
import { tome } from './methods/tome';
import { visionZip } from './methods/visionzip';
import { Step, StepParams, StepRecord, stepHook } from './paradigm';
import { ReductionHook } from './tokenState';

/** Every method, in the order pickers list them. */
export const METHODS: readonly Method[] = [
  ficocoV,
  ficocoL,
  ficocoVL,
  fasterVLM,
  visionZip,
  pruMergePlus,
  fastv,
  pdrop,
  sparsevlm,
  dart,
  divPrune,
  tome,
  evit,
  random,
  pooling,
];

/** An image a message names by its size, as a tiled model reads it: "a 1920 × 1080 image". */
export function imageOfSize(size: Size): string {
  return `a ${size.width} × ${size.height} image`;
}

/** A token budget above the visual tokens an image brings, so that nothing would be reduced. */
export class BudgetAboveTokensError extends ReductionSettingsError {
  override name = 'BudgetAboveTokensError';

  /**
   * `image` says which image ("an image", or imageOfSize's "a 1920 × 1080 image"); `offOption` is the option that
   * turns reduction off where the message is read (a command line's `--method none`): the chat's words name no setting.
   */
  constructor(
    readonly budget: number,
    readonly tokens: number,
    readonly image: string,
    offOption?: string,
  ) {
    super(
      `A budget of ${budget} visual tokens is more than the ${tokens} this model gives ${image}, so nothing would be ` +
        `reduced; keep at most ${tokens}, or turn reduction off${offOption ? ` with ${offOption}` : ''}.`,
    );
  }

  /** The same refusal, naming the option that turns reduction off. */
  withOffOption(option: string): BudgetAboveTokensError {
    return new BudgetAboveTokensError(this.budget, this.tokens, this.image, option);
  }
}

export function findMethod(name: string): Method {
  const method = METHODS.find((m) => m.name === name);
  if (!method) {
    const meant = nameLike(name);
    throw new ReductionSettingsError(
      meant
        ? `Unknown reduction method "${name}"; did you mean "${meant}"?`
        : `Unknown reduction method "${name}"; available: ${METHODS.map((m) => m.name).join(', ')}.`,
    );
  }
  return method;
}

/**
 * The one of `names` that a mistyped name means when they differ only in case and punctuation, as the papers write
 * them (FiCoCo-V, ficoco_v → ficoco-v); undefined when none does.
 */
export function nameLike(name: string, names: readonly string[] = METHODS.map((m) => m.name)): string | undefined {
  const letters = (text: string) => text.toLowerCase().replace(/[^a-z0-9]/g, '');
  return names.find((known) => letters(known) === letters(name));
}

/** Fills defaults and checks every given parameter against the method's schema. */
export function resolveParams(method: Method, given: Readonly<Record<string, unknown>> = {}): StepParams {
  const resolved: StepParams = {};
  for (const name of Object.keys(given)) {
    if (!(name in method.params)) {
      throw new ReductionSettingsError(
        `${method.name} has no parameter "${name}"; its parameters are ${Object.keys(method.params).join(', ') || 'none'}.`,
      );
    }
  }
  for (const [name, spec] of Object.entries(method.params)) {
    let value = given[name] ?? spec.default;
    const where = `${method.name}.${name}`;
    if (spec.type === 'boolean') {
      if (typeof value !== 'boolean')
        throw new ReductionSettingsError(`${where} is ${JSON.stringify(value)}; expected true or false.`);
    } else if (spec.type === 'enum') {
      if (typeof value !== 'string' || !spec.values.includes(value))
        throw new ReductionSettingsError(
          `${where} is ${JSON.stringify(value)}; expected one of ${spec.values.join(', ')}.`,
        );
    } else if (spec.type === 'list') {
      // Held as its numbers written plainly ("42,42"), whatever spacing or number type it arrived with.
      value = parseNumberList(value, where).join(',');
    } else if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      value < spec.min ||
      value > spec.max ||
      (spec.type === 'integer' && !Number.isInteger(value))
    ) {
      throw new ReductionSettingsError(
        `${where} is ${JSON.stringify(value)}; expected ` +
          `${spec.type === 'integer' ? 'an integer' : 'a number'} in [${spec.min}, ${spec.max}].`,
      );
    }
    resolved[name] = value as ParamValue;
  }
  return resolved;
}

export interface ReductionPlan {
  method: Method;
  params: StepParams;
  /** visual tokens kept per image */
  keep: number;
  steps: Step[];
}

/** A request's method and parameters, checked with its budget: what is wrong is a ReductionSettingsError. */
export function checkedRequest(
  methodName: string,
  budget: Budget,
  given?: Readonly<Record<string, unknown>>,
): { method: Method; params: StepParams } {
  const method = findMethod(methodName);
  if (!isValidBudget(budget))
    throw new ReductionSettingsError(`Budget ${readableBudget(budget)} is not valid: give ${BUDGET_HINT}.`);
  return { method, params: resolveParams(method, given) };
}

/** The concrete steps of a method for a model and budget. */
export function planReduction(
  methodName: string,
  budget: Budget,
  model: ModelShape,
  given?: Readonly<Record<string, unknown>>,
): ReductionPlan {
  const { method, params } = checkedRequest(methodName, budget, given);
  if ('tokens' in budget && budget.tokens > model.visualTokens)
    throw new BudgetAboveTokensError(budget.tokens, model.visualTokens, 'an image');
  const keep = keptTokens(budget, model.visualTokens);
  return { method, params, keep, steps: method.plan(model, keep, params).filter((step) => step.remove > 0) };
}

/** The plan's steps as engine hooks; each run appends what it did to `log`. */
export function planHooks(plan: ReductionPlan, log?: StepRecord[]): ReductionHook[] {
  return plan.steps.map((step) => stepHook(step, log));
}
