/** An error the user can act on: it names the file or field at fault and what was expected. */
export class FicocoError extends Error {
  constructor(
    message: string,
    /** Stable machine-readable kind, e.g. 'model-folder', 'weights', 'config', 'image', 'input', 'provider'. */
    readonly kind: FicocoErrorKind,
  ) {
    super(message);
    this.name = 'FicocoError';
  }
}

export type FicocoErrorKind = 'model-folder' | 'weights' | 'config' | 'image' | 'input' | 'provider' | 'download' | 'cancelled';
