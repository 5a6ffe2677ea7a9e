import { FicocoError } from '../common/errors';
import type { PrefillProgress } from '../common/prefillProgress';

const PREFILL_CANCELLED = 'The question was stopped before its answer began.';

/**
 * Follows one prefill for its caller: stops it between tower passes and between prompt chunks once `signal` aborts
 * (a high-resolution image on a CPU can take a minute to read), and reports its progress after each.
 */
export class PrefillWatch {
  private passesDone = 0;
  private tokenBlocksDone = 0;
  private tokenBlocksAhead = 0;

  constructor(
    private readonly passes: number,
    private readonly signal?: AbortSignal,
    private readonly onProgress?: (progress: PrefillProgress) => void,
  ) {}

  /** Throws the 'cancelled' FicocoError once the signal has aborted. */
  check(): void {
    if (this.signal?.aborted) throw new FicocoError(PREFILL_CANCELLED, 'cancelled');
  }

  passDone(): void {
    this.onProgress?.({ stage: 'image', done: ++this.passesDone, total: this.passes });
  }

  /** The prompt's work from here: `tokens` through `blocks` decoder blocks (at the start, and after each hook). */
  promptAhead(tokens: number, blocks: number): void {
    this.tokenBlocksAhead = this.tokenBlocksDone + tokens * blocks;
  }

  chunkDone(tokens: number, blocks: number): void {
    this.tokenBlocksDone += tokens * blocks;
    this.onProgress?.({ stage: 'prompt', done: this.tokenBlocksDone, total: this.tokenBlocksAhead });
  }
}
