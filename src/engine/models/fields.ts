/** Reading config.json: typed field access that names the file and the offending field in its error. */
import { FicocoError, shortJson } from '../../common/errors';
import { Activation } from '../graph/ops';

export type Json = Record<string, unknown>;

export function asObject(value: unknown, source: string, where: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FicocoError(`${source}: ${where} must be a JSON object.`, 'config');
  }
  return value as Json;
}

/** An unknown model_type, with the ones this engine has (from the registry that was asked). */
export function unsupported(
  source: string,
  field: string,
  value: unknown,
  supported: readonly string[],
  what = '',
): FicocoError {
  return new FicocoError(
    `${source}: ${field} is ${shortJson(value)}; supported: ${supported.map((type) => JSON.stringify(type)).join(', ')}${what}.`,
    'config',
  );
}

const ACTIVATIONS: Record<string, Activation> = {
  quick_gelu: 'quick_gelu',
  gelu: 'gelu',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_new: 'gelu_tanh',
  silu: 'silu',
  swish: 'silu',
};

export class Fields {
  constructor(
    private readonly json: Json,
    private readonly source: string,
    private readonly prefix: string,
  ) {}

  private fail(key: string, expected: string): never {
    throw new FicocoError(
      `${this.source}: ${this.prefix}${key} is ${shortJson(this.json[key])}; expected ${expected}.`,
      'config',
    );
  }

  check(ok: boolean, key: string, expected: string): void {
    if (!ok) this.fail(key, expected);
  }

  /** A number above zero (an epsilon, a rotary base: zero or less turns every answer into NaN). */
  positive(key: string): number {
    const value = this.json[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) this.fail(key, 'a number above 0');
    return value;
  }

  int(key: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.json[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(key, max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`);
    }
    return value;
  }

  bool(key: string): boolean {
    const value = this.json[key];
    if (typeof value !== 'boolean') this.fail(key, 'true or false');
    return value;
  }

  oneOf<T extends string>(key: string, options: readonly T[]): T {
    const value = this.json[key];
    if (!options.includes(value as T)) this.fail(key, `one of ${options.map((o) => JSON.stringify(o)).join(', ')}`);
    return value as T;
  }

  activation(key: string): Activation {
    const value = this.json[key];
    const known = typeof value === 'string' ? ACTIVATIONS[value] : undefined;
    if (!known) this.fail(key, `one of ${Object.keys(ACTIVATIONS).join(', ')}`);
    return known;
  }
}
