import { FicocoError } from '../common/errors';
import type { PrefillProgress } from '../common/prefillProgress';

const PREFILL_CANCELLED = 'The question was stopped before its answer began.';

/** The two kinds of run a prefill makes: a vision tower pass, a decoder prompt chunk. */
type RunKind = 'pass' | 'chunk';

/**
 * How fast an engine's runs have gone, kept across its prefills: ms per analytic FLOP of the latest run of each kind.
 * A caller hears from it how long a run about to start should take (Stop waits for a run in flight, so a long one
 * is not mistaken for a hung process).
 */
export class RunPace {
  private readonly msPerFlop: Partial<Record<RunKind, number>> = {};

  record(kind: RunKind, flops: number, ms: number): void {
    if (flops > 0) this.msPerFlop[kind] = ms / flops;
  }

  /** At the latest rate of its kind, else of the other kind (a first chunk after the image's passes); none before. */
  expectMs(kind: RunKind, flops: number): number | undefined {
    const rate = this.msPerFlop[kind] ?? this.msPerFlop[kind === 'pass' ? 'chunk' : 'pass'];
    return rate === undefined ? undefined : Math.ceil(rate * flops);
  }
}

export interface PrefillWatchOptions {
  /** tower passes of the prefill's images */
  passes: number;
  signal?: AbortSignal;
  onProgress?: (progress: PrefillProgress) => void;
  pace: RunPace;
  /** analytic FLOPs of one unreduced tower pass (what a first pass is foretold by), and of one token through one block */
  flops: { pass: number; tokenBlock: number };
}

/**
 * Follows one prefill for its caller: stops it before a tower pass or prompt chunk once `signal` aborts (a
 * high-resolution image on a CPU can take a minute to read), and reports its progress as each stage starts and after
 * each run, with the expected time of the run starting then where the engine's pace gives one.
 */
export class PrefillWatch {
  private passesDone = 0;
  private tokenBlocksDone = 0;
  private tokenBlocksAhead = 0;
  private chunksStarted = 0;
  private runStarted = 0;

  constructor(private readonly options: PrefillWatchOptions) {}

  /** Reports the image stage's start before the first pass; throws once the signal has aborted (`check`). */
  async beforePass(): Promise<void> {
    const { passes, flops, pace } = this.options;
    if (this.passesDone === 0) this.report('image', 0, passes, pace.expectMs('pass', flops.pass));
    await this.check();
    this.runStarted = performance.now();
  }

  /** `flops`: the pass's own, as a reduction in the tower ran it; the next pass is foretold as its like. */
  passDone(flops: number): void {
    this.options.pace.record('pass', flops, performance.now() - this.runStarted);
    const next = ++this.passesDone < this.options.passes ? this.options.pace.expectMs('pass', flops) : undefined;
    this.report('image', this.passesDone, this.options.passes, next);
  }

  /** The prompt's work from here: `tokens` through `blocks` decoder blocks (at the start, and after each hook). */
  promptAhead(tokens: number, blocks: number): void {
    this.tokenBlocksAhead = this.tokenBlocksDone + tokens * blocks;
  }

  /** Reports the prompt stage's start before its first chunk; throws once the signal has aborted (`check`). */
  async beforeChunk(tokens: number, blocks: number): Promise<void> {
    if (this.chunksStarted++ === 0)
      this.report(
        'prompt',
        0,
        this.tokenBlocksAhead,
        this.options.pace.expectMs('chunk', this.chunkFlops(tokens, blocks)),
      );
    await this.check();
    this.runStarted = performance.now();
  }

  chunkDone(tokens: number, blocks: number): void {
    const flops = this.chunkFlops(tokens, blocks);
    this.options.pace.record('chunk', flops, performance.now() - this.runStarted);
    this.tokenBlocksDone += tokens * blocks;
    // Chunks are of equal size (equalChunkTokens in promptChunks.ts), so the next is foretold as this one's like.
    const next = this.tokenBlocksDone < this.tokenBlocksAhead ? this.options.pace.expectMs('chunk', flops) : undefined;
    this.report('prompt', this.tokenBlocksDone, this.tokenBlocksAhead, next);
  }

  /**
   * Lets the event loop handle what arrived during the last run, then throws the 'cancelled' FicocoError once the
   * signal has aborted. ONNX Runtime's runs block the event loop, so a cancel sent meanwhile waits to be read; two
   * turns, because a message read in the first may be handled in an immediate of its own (the host's JSON-RPC does).
   */
  async check(): Promise<void> {
    if (!this.options.signal) return;
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
    if (this.options.signal.aborted) throw new FicocoError(PREFILL_CANCELLED, 'cancelled');
  }

  private chunkFlops(tokens: number, blocks: number): number {
    return tokens * blocks * this.options.flops.tokenBlock;
  }

  private report(stage: PrefillProgress['stage'], done: number, total: number, nextRunMs: number | undefined): void {
    this.options.onProgress?.({ stage, done, total, ...(nextRunMs === undefined ? {} : { nextRunMs }) });
  }
}
