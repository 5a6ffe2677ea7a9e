/** The two parts of a prefill a caller hears about: the images through the vision tower, then the prompt. */
export const PREFILL_STAGES = ['image', 'prompt'] as const;

/**
 * How far a prefill has come. `image`: tower passes done of every image's (a tiled image's base image and tiles);
 * `prompt`: token-blocks done (each decoder chunk's tokens times its segment's blocks, a layer's attention and MLP
 * halves) of those known to be ahead, a total that shrinks when a reduction step in the decoder drops tokens.
 */
export interface PrefillProgress {
  stage: (typeof PREFILL_STAGES)[number];
  done: number;
  total: number;
}
