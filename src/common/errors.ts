/**
 * What went wrong, for code that decides what to offer (open a setting, show the log): the model folder, its
 * weights or config, an image, the user's input, the reduction settings, the execution provider, a model too large for
 * the machine's memory, a download, or a cancellation. Messages are for people; kinds are for code.
 */
export const FICOCO_ERROR_KINDS = [
  'model-folder',
  'weights',
  'config',
  'image',
  'input',
  'reduction',
  'provider',
  'memory',
  'download',
  'cancelled',
] as const;
export type FicocoErrorKind = (typeof FICOCO_ERROR_KINDS)[number];

/** An error the user can act on: it names the file or field at fault and what was expected. */
export class FicocoError extends Error {
  constructor(
    message: string,
    readonly kind: FicocoErrorKind,
  ) {
    super(message);
    this.name = 'FicocoError';
  }
}

/** A value as JSON for an error message, cut short: a hostile file's value may be megabytes long. */
export function shortJson(value: unknown): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 200 ? `${json.slice(0, 200)}… (${json.length} characters)` : json;
}
