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

  /**
   * Lets the event loop handle what arrived during the last run, then throws the 'cancelled' FicocoError once the
   * signal has aborted. ONNX Runtime's runs block the event loop, so a cancel sent meanwhile waits to be read; two
   * turns, because a message read in the first may be handled in an immediate of its own (the host's JSON-RPC does).
   */
  async check(): Promise<void> {
    if (!this.signal) return;
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
    if (this.signal.aborted) throw new FicocoError(PREFILL_CANCELLED, 'cancelled');
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
