import { FicocoError } from '../common/errors';
import { PROVIDERS, ProviderSetting } from '../engine/runtime/provider';
import { WEIGHT_QUANTIZATIONS, WeightQuantization } from '../engine/weights/quantize';
import { Budget, ParamValue } from '../reduction/method';

export function number(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < min) throw new FicocoError(`${flag} ${text} is not a number ≥ ${min}.`, 'input');
  return value;
}

export function integer(flag: string, text: string, min: number): number {
  const value = number(flag, text, min);
  if (!Number.isInteger(value)) throw new FicocoError(`${flag} ${text} is not a whole number.`, 'input');
  return value;
}

/** "64" keeps 64 visual tokens per image; "25%" or "0.25" keeps that share. */
export function budgetArg(text: string): Budget {
  if (text.endsWith('%')) return { ratio: number('--budget', text.slice(0, -1), 0) / 100 };
  const value = number('--budget', text, 0);
  if (value > 0 && value < 1) return { ratio: value };
  if (!Number.isInteger(value) || value < 1) throw new FicocoError(`--budget ${text} must be a token count (e.g. 64) or a share (e.g. 25% or 0.25).`, 'input');
  return { tokens: value };
}

/** --param name=value pairs; numbers and true/false are typed, anything else stays text. */
export function paramArgs(pairs: readonly string[] = []): Record<string, ParamValue> {
  const params: Record<string, ParamValue> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new FicocoError(`--param ${pair} must look like name=value (e.g. --param epsilon=0.996).`, 'input');
    const raw = pair.slice(eq + 1);
    params[pair.slice(0, eq)] = raw === 'true' ? true : raw === 'false' ? false : raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  return params;
}

/** --quantize: none, int8 or int4 (weight-only, the decoder's linear layers). */
export function quantizationArg(value: string | undefined): WeightQuantization {
  if (value === undefined) return 'none';
  if (!(WEIGHT_QUANTIZATIONS as readonly string[]).includes(value)) throw new FicocoError(`--quantize ${value} is not known; use ${WEIGHT_QUANTIZATIONS.join(', ')}.`, 'input');
  return value as WeightQuantization;
}

/** --provider: auto or one of the execution providers. */
export function providerArg(value: string): ProviderSetting {
  if (value !== 'auto' && !(PROVIDERS as readonly string[]).includes(value)) throw new FicocoError(`--provider ${value} is not known; use auto, ${PROVIDERS.join(', ')}.`, 'input');
  return value as ProviderSetting;
}
