/**
 * The library: what a Node program needs to ask a local LLaVA model about images in its own process, with an optional
 * visual token reduction. `npm run build` bundles it into dist/index.js and emits its declarations into dist/types
 * (package.json "exports"); README.md, "As a library", has an example. It re-exports the engine, the reduction
 * methods, the error kinds and the model presets and downloads, and adds nothing to how they behave. Importing it sets
 * ONNX Runtime's process-wide default log level (src/engine/runtime/provider.ts).
 */
import type { Answer, AskRequest as EngineAskRequest, EngineOptions } from './engine/api';
import { LlavaEngine as Engine } from './engine/engine';
import type { ReductionChoice } from './engine/recommendation';
import type { ProviderName } from './common/providers';
import type { ReductionRequest } from './common/reductionChoice';
import { findBuiltinModel } from './hub/presets';
import type { Method } from './reduction/method';
import { METHODS as REGISTRY } from './reduction/registry';

/** A question about images: `hooks` (reduction steps of your own) stays inside the project. */
export type AskRequest = Omit<EngineAskRequest, 'hooks'>;

/** A loaded model folder, ready to answer questions about images; `LlavaEngine.load` makes one. */
export interface LlavaEngine {
  /** the model folder, as an absolute path */
  readonly modelDir: string;
  /** the execution provider the sessions run on */
  readonly provider: ProviderName;
  /** why the provider asked for did not load and the engine fell back, where it did */
  readonly providerFallback: string | undefined;
  /** intra-op threads each session starts */
  readonly threads: number | undefined;
  /** what weight quantization took, in words ("int8 (decoder and vision tower)"); undefined without it */
  readonly quantizedWeights: string | undefined;
  /** what `{ method: 'auto' }` stands for on this model, and which rule chose it */
  readonly autoReduction: ReductionChoice;
  /** Makes the first answer with this reduction (none: unreduced) as fast as later ones. */
  warmUp(reduction?: ReductionRequest): Promise<void>;
  /**
   * Answers a question about images; `onText` receives the text as it streams, and `signal` stops the answer between
   * tokens (before the first one, ask rejects with a FicocoError of kind 'cancelled').
   */
  ask(request: AskRequest): Promise<Answer>;
  /**
   * Releases the model's sessions and its chat template's child process, once the questions in flight have stopped
   * (an answer begun ends as cancelled with its text so far; one not yet begun rejects with a FicocoError of kind
   * 'cancelled'); a question asked after it is refused so.
   */
  dispose(): Promise<void>;
}

export const LlavaEngine: {
  /** Loads a Hugging Face LLaVA model folder (config.json, *.safetensors, tokenizer and preprocessor files). */
  load(modelDir: string, options?: EngineOptions): Promise<LlavaEngine>;
} = Engine;

/** A reduction method as `ficoco methods` lists it: its name, description, reference and parameter schema. */
export type ReductionMethod = Omit<Method, 'plan'>;

/** Every reduction method, in the order pickers list them; a request names one with its budget and parameters. */
export const METHODS: readonly ReductionMethod[] = REGISTRY;

/** The built-in model folder (models/tiny-llava-screens in this package), or undefined where the package has none. */
export function builtinModelFolder(): string | undefined {
  return findBuiltinModel(__dirname);
}

export type { Answer, EngineOptions, ReductionChoice };
export type { AnswerStats, PatchFates, StepStat } from './engine/api';
export type { ChatMessage, ChatContent } from './engine/text/chat-template';
export type { SamplingOptions } from './engine/runtime/sampling';
export type { ParamSpec } from './reduction/method';
export type { PrefillProgress } from './common/prefillProgress';
export { AUTO_METHOD, NO_REDUCTION, type ReductionRequest, type ReductionRule } from './common/reductionChoice';
export { parseBudget, type Budget, type ParamValue } from './common/budget';
export {
  PROVIDERS,
  PROVIDER_SETTINGS,
  type Precision,
  type ProviderName,
  type ProviderSetting,
} from './common/providers';
export { WEIGHT_QUANTIZATIONS, type WeightQuantization } from './common/quantization';
export { FICOCO_ERROR_KINDS, FicocoError, type FicocoErrorKind } from './common/errors';
export { MODEL_PRESETS, findPreset, type ModelPreset } from './hub/presets';
export { DEFAULT_HUB_ENDPOINT } from './hub/hubHttp';
export { downloadModel, type DownloadOptions, type DownloadProgress } from './hub/download';
export { planDownload, type DownloadPlan, type HubFile, type ModelRequest } from './hub/downloadPlan';
