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
  /**
   * analytic FLOPs of one unreduced tower pass (what a first pass is foretold by), of one token through one block
   * without its attention scores, and of one query-key pair in one attention block (scores and softmax)
   */
  flops: { pass: number; tokenBlock: number; keyPair: number };
}

/** One run of a decoder segment over a chunk of the prompt. */
export interface PromptChunk {
  tokens: number;
  /** decoder blocks the segment runs: a layer's attention and MLP halves */
  blocks: number;
  /** of those, the attention halves, where each token attends to the cached tokens and the chunk's own */
  attentionBlocks: number;
  /** tokens the segment's layers have cached before the chunk */
  cached: number;
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
  async beforeChunk(chunk: PromptChunk): Promise<void> {
    if (this.chunksStarted++ === 0)
      this.report('prompt', 0, this.tokenBlocksAhead, this.options.pace.expectMs('chunk', this.chunkFlops(chunk)));
    await this.check();
    this.runStarted = performance.now();
  }

  chunkDone(chunk: PromptChunk): void {
    this.options.pace.record('chunk', this.chunkFlops(chunk), performance.now() - this.runStarted);
    this.tokenBlocksDone += chunk.tokens * chunk.blocks;
    // Chunks are of equal size (equalChunkTokens in promptChunks.ts): the next is foretold as this one's like, with
    // its tokens cached before it too.
    const next = { ...chunk, cached: chunk.cached + chunk.tokens };
    const nextMs =
      this.tokenBlocksDone < this.tokenBlocksAhead
        ? this.options.pace.expectMs('chunk', this.chunkFlops(next))
        : undefined;
    this.report('prompt', this.tokenBlocksDone, this.tokenBlocksAhead, nextMs);
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

  /** A chunk's work grows with the tokens before it: each of its tokens attends to those and to the chunk's own. */
  private chunkFlops({ tokens, blocks, attentionBlocks, cached }: PromptChunk): number {
    const { tokenBlock, keyPair } = this.options.flops;
    return tokens * blocks * tokenBlock + attentionBlocks * tokens * (cached + tokens) * keyPair;
  }

  private report(stage: PrefillProgress['stage'], done: number, total: number, nextRunMs: number | undefined): void {
    this.options.onProgress?.({ stage, done, total, ...(nextRunMs === undefined ? {} : { nextRunMs }) });
  }
}
