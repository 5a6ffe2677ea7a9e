/**
 * What a caller gives the engine and gets back: the load options, a question, and the answer with its stats. Apart
 * from engine.ts, which imports ONNX Runtime and the graph builder, so that the library's declarations (src/index.ts)
 * name these without them.
 */
import type { ParamValue } from '../common/budget';
import type { PrefillProgress } from '../common/prefillProgress';
import type { Precision, ProviderName, ProviderSetting } from '../common/providers';
import type { WeightQuantization } from '../common/quantization';
import type { ReductionRequest, ReductionRule } from '../common/reductionChoice';
import type { RunFlops } from '../flops/model';
import type { HookSite, ReductionHook } from '../reduction/tokenState';
import type { Region } from './image/preprocess';
import type { SamplingOptions } from './runtime/sampling';
import type { ChatMessage } from './text/chat-template';

export interface EngineOptions {
  provider?: ProviderSetting;
  /** 'auto' (default): float16 graphs on GPU providers, float32 on the CPU */
  precision?: Precision;
  /** intra-op threads (default: defaultThreads in runtime/threads.ts, over `cores`) */
  threads?: number;
  /** physical cores the default threads may use (default: this machine's; ficoco serve shares them among workers) */
  cores?: number;
  /** quantization of the decoder's linear layers (on the CPU the tower's too), cached beside the weights (default none) */
  quantization?: WeightQuantization;
  /** where quantized caches of weights in a Hugging Face cache or a read-only folder go (default in ~/.cache) */
  quantizedCacheDir?: string;
  /** the first load with a quantization: called as each of `total` layers is quantized and cached */
  onQuantizing?: (done: number, total: number) => void;
  /**
   * bytes of memory available now (default availableMemory in src/common/memory.ts), read at load and before each run:
   * a load keeps int8's second layout of the decoder only where the weights with it fit, and a run plans its attention
   * and KV cache within it
   */
  availableMemory?: () => number;
  /** the memory the process may use in all, which the CPU provider's weights must fit (default memoryInAll) */
  totalMemory?: () => number;
  /** prompt tokens a decoder segment takes at most at once (default PREFILL_CHUNK_TOKENS) */
  prefillChunkTokens?: number;
  /** a small prefill's FLOPs below which warming up asks about a blank image a few times (default 20 G) */
  warmUpRepeatsBelowFlops?: number;
}

/** A reduction step's effect: tokens before and after, and the time the hook took. */
export interface StepStat {
  site: HookSite;
  image?: number;
  tokensBefore: number;
  tokensAfter: number;
  ms: number;
  /** CPU time of the step; below `ms` when the machine took the CPU away mid-step */
  cpuMs: number;
}

/**
 * What became of one image's patches by the end of prefill: k = kept as its own token, m = merged into another, d =
 * dropped.
 */
export interface PatchFates {
  rows: number;
  cols: number;
  /** one letter per patch, raster order */
  patches: string;
  /** a tiled image: where its tiles meet, in cells from the grid's top and left edges */
  tileBorders?: { rows: number[]; cols: number[] };
  /** a tiled image: its base image (the whole screenshot squashed to one tile), patch by patch */
  thumbnail?: { rows: number; cols: number; patches: string };
  /** an image seen whole, where that is not all of it: the part of it the grid covers (seenRegion) */
  seen?: Region;
}

export interface AskRequest {
  question: string;
  images: { bytes: Uint8Array; name: string }[];
  /** earlier turns of the conversation, text only (a string, or text parts; an image part is refused) */
  history?: ChatMessage[];
  maxNewTokens?: number;
  sampling?: SamplingOptions;
  /**
   * a reduction method from the registry, e.g. { method: 'ficoco-v', budget: { tokens: 64 } }, `auto` (the model's
   * recommendation: see autoReduction; its budget and params are not used), or `none` (every visual token)
   */
  reduction?: ReductionRequest;
  /** hooks of your own, run besides the method's */
  hooks?: readonly ReductionHook[];
  /** receives the answer text as it streams */
  onText?: (text: string) => void;
  /** how far reading the images and the prompt has come, before the first token */
  onProgress?: (progress: PrefillProgress) => void;
  /** stops the answer between tokens, or before the first one (then ask rejects with a 'cancelled' FicocoError) */
  signal?: AbortSignal;
}

export interface AnswerStats {
  /** the reduction that ran and why it was chosen; absent when none was asked for */
  reduction?: { method: string; budget: string; params: Record<string, ParamValue>; rule: ReductionRule; why: string };
  promptTokens: number;
  generatedTokens: number;
  visualTokens: { original: number; atDecoder: number }[];
  /** the images as decoded, before preprocessing */
  imageSizes: { width: number; height: number }[];
  steps: StepStat[];
  /** per image, what reduction did to its patches; only when a reduction step ran */
  patchFates?: PatchFates[];
  preprocessMs: number;
  visionMs: number;
  prefillMs: number;
  ttftMs: number;
  decodeTokensPerSecond: number;
  /** analytic, not measured: FLOPs of this prefill and of the unreduced one */
  flops: { run: RunFlops; unreduced: RunFlops };
  provider: ProviderName;
  providerFallback?: string;
  /** the oldest messages of the history left out so that prompt and answer fit the model's context */
  historyTrimmed?: { droppedMessages: number; contextTokens: number };
}

export interface Answer {
  text: string;
  tokenIds: number[];
  stopReason: 'stop-token' | 'max-tokens' | 'cancelled';
  stats: AnswerStats;
}
