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
  /**
   * how long the run starting now (a tower pass or prompt chunk) should take, in ms, at the pace of the engine's
   * earlier runs; absent where there is none (its first run, or the stage's last is done)
   */
  nextRunMs?: number;
}

/** What the status bar, a waiting reply and `ficoco ask` say of it: "Reading the image: part 3 of 10". */
export function prefillProgressLabel({ stage, done, total }: PrefillProgress): string {
  if (stage === 'image')
    return total > 1 && done > 0 ? `Reading the image: part ${done} of ${total}` : 'Reading the image';
  return `Reading the prompt: ${Math.floor((100 * done) / Math.max(total, 1))} %`;
}

/** What a reply stopped during a long run says until the run is done: "Stopping after the current step, about 12 s". */
export function stoppingLabel(remainingMs: number): string {
  return `Stopping after the current step, about ${Math.max(1, Math.ceil(remainingMs / 1000))} s`;
}
