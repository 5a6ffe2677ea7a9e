/**
 * Errors from the FLOPs model. src/flops is the lowest layer and cannot import the engine's FicocoError;
 * callers (CLI, engine stats) turn these into FicocoError with the same message and kind.
 */
export class FlopsError extends Error {
  constructor(
    message: string,
    /** 'input': a bad token count, budget or shape; 'config': a config.json field the model cannot use. */
    readonly kind: 'input' | 'config',
  ) {
    super(message);
    this.name = 'FlopsError';
  }
}

/** Throws unless `value` is a finite integer ≥ 0 (token counts, layer counts). */
export function checkCount(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0)
    throw new FlopsError(`${what} is ${value}; expected a whole number ≥ 0.`, 'input');
}
