/**
 * The JSON-RPC contract between the extension (client) and the engine host process (server),
 * carried by vscode-jsonrpc over Node's IPC channel. Plain data and validators over src/common only: no engine
 * code or types, no Node or vscode imports, so the extension, the host and the webview can share it.
 *
 * Cancellation is vscode-jsonrpc's own ($/cancelRequest → CancellationToken): a cancelled ask still
 * answers, with the text so far and stopReason 'cancelled', or, cancelled before its first token, fails with kind
 * 'cancelled'. Failures are ResponseErrors whose data carries a stable `kind`.
 */
import { ErrorCodes, NotificationType, RequestType, ResponseError } from 'vscode-jsonrpc';

import { PROVIDERS, PROVIDER_SETTINGS, ProviderName, ProviderSetting } from '../common/providers';
import { WEIGHT_QUANTIZATIONS, WeightQuantization } from '../common/quantization';
import { BUDGET_HINT, type Budget, type ParamValue, isValidBudget } from '../common/budget';
import { FICOCO_ERROR_KINDS } from '../common/errors';
import { AUTO_METHOD, REDUCTION_RULES, type ReductionRequest, type ReductionRule } from '../common/reductionChoice';
import { MAX_IMAGE_BYTES } from '../common/imageFile';
import { MAX_SEED } from '../common/random';
import { PREFILL_STAGES, type PrefillProgress } from '../common/prefillProgress';
import { describeValue } from './describe';
import { type PatchFates, fieldReaders } from './fields';

export { PROVIDER_SETTINGS, type ProviderName, type ProviderSetting };

/** Largest image file the host accepts (decoded bytes, not base64 characters). */
export { MAX_IMAGE_BYTES };
export const MAX_NEW_TOKENS_LIMIT = 4096;
/** Sampling a question may ask for: a temperature beyond this samples all but uniformly; seeds are 32-bit. */
export const MAX_TEMPERATURE = 100;
export { MAX_SEED };

export interface LoadParams {
  /** a Hugging Face LLaVA model folder on the host's machine */
  modelDir: string;
  provider: ProviderSetting;
  /** intra-op threads; ONNX Runtime's default when absent */
  threads?: number;
  /** physical cores the engine's default threads may use; this machine's when absent */
  cores?: number;
  /** quantization of the decoder's linear layers and output head (on the CPU the vision tower's too); none when absent */
  quantization?: WeightQuantization;
  /** where quantized weights of a model in a Hugging Face cache are kept (the engine's default when absent) */
  quantizedCacheDir?: string;
  /** the reduction the next questions will use: warmed up once the model is loaded (not part of the load's key) */
  warmUp?: ReductionRequest;
}

/** A load the host has already answered with this key is not sent again: a new reduction to warm up is a new one. */
export function loadRequestKey(params: LoadParams): string {
  return JSON.stringify([loadKey(params), params.warmUp ?? null]);
}

/** Two loads with the same key share one loaded engine (the reduction to warm up is not part of it). */
export function loadKey(params: LoadParams): string {
  return JSON.stringify([
    params.modelDir,
    params.provider,
    params.threads ?? null,
    params.cores ?? null,
    params.quantization ?? 'none',
    params.quantizedCacheDir ?? null,
  ]);
}

export interface LoadResult {
  /** the provider the engine actually runs on */
  provider: ProviderName;
  /** why the requested provider was not used, when it was not */
  providerFallback?: string;
  /** the folder as the host resolved it */
  modelDir: string;
}

export interface ImageAttachment {
  /** a file name; its extension is a hint for the decoder */
  name: string;
  /** the image file's bytes, base64 */
  dataBase64: string;
}

/** An earlier turn of the conversation, text only; a system message is kept when older turns are trimmed. */
export interface HistoryMessage {
  role: 'system' | 'user' | 'assistant';
  text: string;
}

export interface AskParams {
  /** chosen by the client; `engine/text` notifications of this ask carry it */
  requestId: string;
  question: string;
  images: ImageAttachment[];
  /** earlier turns, oldest first */
  history?: HistoryMessage[];
  /** absent: every visual token */
  reduction?: ReductionRequest;
  maxNewTokens: number;
  /** 0 = greedy */
  temperature: number;
  topP: number;
  seed: number;
  /** the most probable tokens kept; absent or 0: every token */
  topK?: number;
  /** the least share of the top token's probability a token needs; absent or 0: no cut */
  minP?: number;
  /** transformers' repetition_penalty; absent or 1: none */
  repetitionPenalty?: number;
}

export type StopReason = 'stop-token' | 'max-tokens' | 'cancelled';

/** Analytic FLOPs of a prefill by part. */
export interface FlopsByPart {
  vision: number;
  projector: number;
  llm: number;
  total: number;
}

/**
 * What the engine measured while answering, as it crosses to the extension. The host passes the engine's own
 * stats, so the compiler checks this contract against them.
 */
export interface AnswerStats {
  /** the reduction that ran (`auto` resolved), which rule chose it and why; absent when none was asked for */
  reduction?: {
    method: string;
    budget: string;
    params: Record<string, ParamValue>;
    rule: ReductionRule;
    why: string;
  };
  /** tokens entering the decoder at prefill */
  promptTokens: number;
  generatedTokens: number;
  /** per image: the visual tokens it started as, and those that reached the decoder */
  visualTokens: { original: number; atDecoder: number }[];
  /** the images as decoded, before preprocessing */
  imageSizes: { width: number; height: number }[];
  /** each reduction step: where, on which image, tokens before and after, wall and CPU ms */
  steps: { site: string; image?: number; tokensBefore: number; tokensAfter: number; ms: number; cpuMs: number }[];
  /**
   * per image, one letter per patch (k kept, m merged, d dropped); only when a reduction step ran. A tiled image's
   * patches are the cells of its grid over the whole screenshot, with the tiles' borders in cells, and its thumbnail's
   * (the base image's).
   */
  patchFates?: PatchFates[];
  preprocessMs: number;
  visionMs: number;
  prefillMs: number;
  ttftMs: number;
  decodeTokensPerSecond: number;
  /** analytic, not measured: FLOPs of this prefill and of the unreduced one */
  flops: { run: FlopsByPart; unreduced: FlopsByPart };
  provider: ProviderName;
  providerFallback?: string;
  /** the oldest messages of the history left out so that prompt and answer fit the model's context */
  historyTrimmed?: { droppedMessages: number; contextTokens: number };
}

export interface AskResult {
  text: string;
  stopReason: StopReason;
  stats: AnswerStats;
}

/** The first load of a model with a quantization: `done` of its `total` layers quantized and cached. */
export interface LoadProgressParams {
  quantization: Exclude<WeightQuantization, 'none'>;
  done: number;
  total: number;
}

export interface TextParams {
  requestId: string;
  /** the next piece of the answer; the pieces of one ask concatenate to its final text */
  text: string;
}

/** How far an ask has read its images and prompt, before its first token. */
export interface AskProgressParams extends PrefillProgress {
  requestId: string;
}

/** Why a request failed: the engine's own kinds, plus the host's — no model yet, or a bug. */
export const ENGINE_ERROR_KINDS = [...FICOCO_ERROR_KINDS, 'not-loaded', 'internal'] as const;
export type EngineErrorKind = (typeof ENGINE_ERROR_KINDS)[number];

export interface EngineErrorData {
  kind: EngineErrorKind;
}

/** ResponseError code of a failure the engine reported (its kind says which); outside JSON-RPC's reserved ranges. */
export const ENGINE_FAILURE = 1;

export const LoadRequest = new RequestType<LoadParams, LoadResult, EngineErrorData>('engine/load');
export const AskRequest = new RequestType<AskParams, AskResult, EngineErrorData>('engine/ask');
export const TextNotification = new NotificationType<TextParams>('engine/text');
export const LoadProgressNotification = new NotificationType<LoadProgressParams>('engine/loadProgress');
export const AskProgressNotification = new NotificationType<AskProgressParams>('engine/askProgress');

/** The kind a ResponseError carries, or undefined when it carries none (e.g. a transport failure). */
export function errorKindOf(error: unknown): EngineErrorKind | undefined {
  if (!(error instanceof ResponseError)) return undefined;
  const data: unknown = error.data;
  return isRecord(data) && (ENGINE_ERROR_KINDS as readonly unknown[]).includes(data.kind)
    ? (data.kind as EngineErrorKind)
    : undefined;
}

// ---- validators: the host checks everything it receives; each failure names the field ----

/** Thrown by the validators; the host sends it back as is. */
export function invalidParams(message: string): ResponseError<EngineErrorData> {
  return new ResponseError<EngineErrorData>(ErrorCodes.InvalidParams, message, { kind: 'input' });
}

export function parseLoadParams(value: unknown): LoadParams {
  const params = record(value, 'engine/load params');
  const modelDir = nonEmptyString(params.modelDir, 'modelDir');
  const provider = params.provider;
  if (typeof provider !== 'string' || !(PROVIDER_SETTINGS as readonly string[]).includes(provider)) {
    throw invalidParams(`provider is ${describeValue(provider)}; expected one of ${PROVIDER_SETTINGS.join(', ')}.`);
  }
  const result: LoadParams = { modelDir, provider: provider as ProviderSetting };
  if (params.threads !== undefined) result.threads = integer(params.threads, 'threads', 1, 1024);
  if (params.cores !== undefined) result.cores = integer(params.cores, 'cores', 1, 1024);
  if (params.quantization !== undefined) {
    if (!(WEIGHT_QUANTIZATIONS as readonly unknown[]).includes(params.quantization))
      throw invalidParams(
        `quantization is ${describeValue(params.quantization)}; expected one of ${WEIGHT_QUANTIZATIONS.join(', ')}.`,
      );
    result.quantization = params.quantization as WeightQuantization;
  }
  if (params.warmUp !== undefined) result.warmUp = parseReduction(params.warmUp, 'warmUp');
  if (params.quantizedCacheDir !== undefined)
    result.quantizedCacheDir = nonEmptyString(params.quantizedCacheDir, 'quantizedCacheDir');
  return result;
}

export function parseAskParams(value: unknown): AskParams {
  const params = record(value, 'engine/ask params');
  if (!Array.isArray(params.images))
    throw invalidParams(`images is ${describeValue(params.images)}; expected an array of { name, dataBase64 }.`);
  return {
    requestId: nonEmptyString(params.requestId, 'requestId'),
    question: string(params.question, 'question'),
    images: params.images.map((image, i) => parseImage(image, `images[${i}]`)),
    maxNewTokens: integer(params.maxNewTokens, 'maxNewTokens', 1, MAX_NEW_TOKENS_LIMIT),
    temperature: finite(params.temperature, 'temperature', 0, MAX_TEMPERATURE),
    topP: finite(params.topP, 'topP', Number.MIN_VALUE, 1),
    seed: integer(params.seed, 'seed', 0, MAX_SEED),
    ...(params.topK === undefined ? {} : { topK: integer(params.topK, 'topK', 0, Number.MAX_SAFE_INTEGER) }),
    ...(params.minP === undefined ? {} : { minP: finite(params.minP, 'minP', 0, 1) }),
    ...(params.repetitionPenalty === undefined
      ? {}
      : { repetitionPenalty: finite(params.repetitionPenalty, 'repetitionPenalty', Number.MIN_VALUE, Infinity) }),
    ...(params.history === undefined ? {} : { history: parseHistory(params.history) }),
    ...(params.reduction === undefined ? {} : { reduction: parseReduction(params.reduction) }),
  };
}

function parseHistory(value: unknown): HistoryMessage[] {
  if (!Array.isArray(value))
    throw invalidParams(`history is ${describeValue(value)}; expected an array of { role, text }.`);
  return value.map((entry, i) => {
    const message = record(entry, `history[${i}]`);
    if (message.role !== 'system' && message.role !== 'user' && message.role !== 'assistant')
      throw invalidParams(`history[${i}].role is ${describeValue(message.role)}; expected system, user or assistant.`);
    return { role: message.role, text: string(message.text, `history[${i}].text`) };
  });
}

function parseReduction(value: unknown, field = 'reduction'): ReductionRequest {
  const reduction = record(value, field);
  const method = nonEmptyString(reduction.method, `${field}.method`);
  const params = record(reduction.params ?? {}, `${field}.params`);
  for (const [name, param] of Object.entries(params)) {
    if (!['number', 'string', 'boolean'].includes(typeof param))
      throw invalidParams(`${field}.params.${name} is ${describeValue(param)}; expected a number, text or true/false.`);
  }
  const result: ReductionRequest = { method, params: params as Record<string, ParamValue> };
  if (reduction.budget === undefined && method === AUTO_METHOD) return result;
  const budget = record(reduction.budget, `${field}.budget`);
  const parsedBudget = (budget.tokens !== undefined ? { tokens: budget.tokens } : { ratio: budget.ratio }) as Budget;
  if (!isValidBudget(parsedBudget))
    throw invalidParams(
      `${field}.budget is ${describeValue(budget)}; expected { tokens } or { ratio }: ${BUDGET_HINT}.`,
    );
  return { ...result, budget: parsedBudget };
}

/** Reduction steps read from another process: more than any run takes (sites × tower passes × 8 images). */
const MAX_STEPS = 10_000;
/** A step's site: `vision:23`, `llm:79`, `projector`; a method's name, a budget. */
const MAX_NAME_CHARS = 64;
/** A parameter's value: a schedule lists a share for each of up to a decoder's 80 layers ("14,14,…"). */
const MAX_PARAM_CHARS = 1024;
/** A method's parameters, shown beside its name: the most any has is about a dozen. */
const MAX_PARAMS = 64;
/** Why a reduction was chosen, why a provider was not used: text shown to the user, longer than the engine writes. */
const MAX_NOTE_CHARS = 16_384;

/**
 * An answer's stats as another process sent them (a remote `ficoco serve` puts them in `ficoco.stats`): checked field
 * by field, as everything received is; with `images`, they must be about as many images as the question sent.
 */
export function parseAnswerStats(value: unknown, field = 'stats', images?: number): AnswerStats {
  const read = fieldReaders((message) => invalidParams(message));
  const stats = read.record(value, field);
  const visualTokens = read.array(stats.visualTokens, `${field}.visualTokens`);
  if (images !== undefined && visualTokens.length !== images)
    throw invalidParams(`${field}.visualTokens has ${visualTokens.length} images; the question sent ${images}.`);
  const steps = read.array(stats.steps, `${field}.steps`);
  if (steps.length > MAX_STEPS) throw invalidParams(`${field}.steps has ${steps.length} steps; at most ${MAX_STEPS}.`);
  const flopsOf = (part: unknown, where: string): FlopsByPart => {
    const flops = read.record(part, where);
    const [vision, projector, llm, total] = (['vision', 'projector', 'llm', 'total'] as const).map((name) =>
      read.nonNegative(flops[name], `${where}.${name}`),
    );
    return { vision, projector, llm, total };
  };
  const flops = read.record(stats.flops, `${field}.flops`);
  const parsed: AnswerStats = {
    promptTokens: read.count(stats.promptTokens, `${field}.promptTokens`),
    generatedTokens: read.count(stats.generatedTokens, `${field}.generatedTokens`),
    visualTokens: visualTokens.map((entry, i) => {
      const tokens = read.record(entry, `${field}.visualTokens[${i}]`);
      return {
        original: read.count(tokens.original, `${field}.visualTokens[${i}].original`),
        atDecoder: read.count(tokens.atDecoder, `${field}.visualTokens[${i}].atDecoder`),
      };
    }),
    imageSizes: read.array(stats.imageSizes, `${field}.imageSizes`).map((entry, i) => {
      const size = read.record(entry, `${field}.imageSizes[${i}]`);
      return {
        width: read.count(size.width, `${field}.imageSizes[${i}].width`),
        height: read.count(size.height, `${field}.imageSizes[${i}].height`),
      };
    }),
    steps: steps.map((entry, i) => {
      const where = `${field}.steps[${i}]`;
      const step = read.record(entry, where);
      return {
        site: read.string(step.site, `${where}.site`, MAX_NAME_CHARS),
        ...(step.image === undefined ? {} : { image: read.count(step.image, `${where}.image`) }),
        tokensBefore: read.count(step.tokensBefore, `${where}.tokensBefore`),
        tokensAfter: read.count(step.tokensAfter, `${where}.tokensAfter`),
        ms: read.nonNegative(step.ms, `${where}.ms`),
        cpuMs: read.nonNegative(step.cpuMs, `${where}.cpuMs`),
      };
    }),
    preprocessMs: read.nonNegative(stats.preprocessMs, `${field}.preprocessMs`),
    visionMs: read.nonNegative(stats.visionMs, `${field}.visionMs`),
    prefillMs: read.nonNegative(stats.prefillMs, `${field}.prefillMs`),
    ttftMs: read.nonNegative(stats.ttftMs, `${field}.ttftMs`),
    decodeTokensPerSecond: read.nonNegative(stats.decodeTokensPerSecond, `${field}.decodeTokensPerSecond`),
    flops: {
      run: flopsOf(flops.run, `${field}.flops.run`),
      unreduced: flopsOf(flops.unreduced, `${field}.flops.unreduced`),
    },
    provider: read.oneOf<ProviderName>(stats.provider, `${field}.provider`, PROVIDERS),
  };
  if (stats.reduction !== undefined) {
    const reduction = read.record(stats.reduction, `${field}.reduction`);
    const params = read.record(reduction.params, `${field}.reduction.params`);
    if (Object.keys(params).length > MAX_PARAMS)
      throw invalidParams(`${field}.reduction.params has more than ${MAX_PARAMS} entries; no method has that many.`);
    for (const [name, param] of Object.entries(params))
      if (!['number', 'string', 'boolean'].includes(typeof param) || String(param).length > MAX_PARAM_CHARS)
        throw invalidParams(`${field}.reduction.params.${name} is ${describeValue(param)}; expected a short value.`);
    parsed.reduction = {
      method: read.nonEmptyString(reduction.method, `${field}.reduction.method`, MAX_NAME_CHARS),
      budget: read.nonEmptyString(reduction.budget, `${field}.reduction.budget`, MAX_NAME_CHARS),
      params: params as Record<string, ParamValue>,
      rule: read.oneOf<ReductionRule>(reduction.rule, `${field}.reduction.rule`, REDUCTION_RULES),
      why: read.string(reduction.why, `${field}.reduction.why`, MAX_NOTE_CHARS),
    };
  }
  if (stats.patchFates !== undefined) {
    const images = read.array(stats.patchFates, `${field}.patchFates`);
    if (images.length !== parsed.visualTokens.length)
      throw invalidParams(
        `${field}.patchFates has ${images.length} images; the answer read ${parsed.visualTokens.length}.`,
      );
    parsed.patchFates = images.map((entry, i) => read.patchFates(entry, `${field}.patchFates[${i}]`));
  }
  if (stats.providerFallback !== undefined)
    parsed.providerFallback = read.string(stats.providerFallback, `${field}.providerFallback`, MAX_NOTE_CHARS);
  if (stats.historyTrimmed !== undefined) {
    const trimmed = read.record(stats.historyTrimmed, `${field}.historyTrimmed`);
    parsed.historyTrimmed = {
      droppedMessages: read.count(trimmed.droppedMessages, `${field}.historyTrimmed.droppedMessages`),
      contextTokens: read.count(trimmed.contextTokens, `${field}.historyTrimmed.contextTokens`),
    };
  }
  return parsed;
}

export function parseTextParams(value: unknown): TextParams {
  const params = record(value, 'engine/text params');
  return { requestId: nonEmptyString(params.requestId, 'requestId'), text: string(params.text, 'text') };
}

export function parseLoadProgressParams(value: unknown): LoadProgressParams {
  const params = record(value, 'engine/loadProgress params');
  const total = integer(params.total, 'total', 1, Number.MAX_SAFE_INTEGER);
  const quantizations = WEIGHT_QUANTIZATIONS.filter((mode) => mode !== 'none');
  if (!(quantizations as unknown[]).includes(params.quantization))
    throw invalidParams(
      `quantization is ${describeValue(params.quantization)}; expected ${quantizations.join(' or ')}.`,
    );
  return {
    quantization: params.quantization as LoadProgressParams['quantization'],
    done: integer(params.done, 'done', 0, total),
    total,
  };
}

export function parseAskProgressParams(value: unknown): AskProgressParams {
  const params = record(value, 'engine/askProgress params');
  return { requestId: nonEmptyString(params.requestId, 'requestId'), ...parsePrefillProgress(params) };
}

/**
 * A prefill's progress: the engine's notification without its request id (fields named alone), or `ficoco serve`'s
 * stream field (`field`, e.g. 'ficoco.progress', names them).
 */
export function parsePrefillProgress(value: unknown, field?: string): PrefillProgress {
  const name = (key: string) => (field ? `${field}.${key}` : key);
  const progress = record(value, field ?? 'progress');
  if (!(PREFILL_STAGES as readonly unknown[]).includes(progress.stage))
    throw invalidParams(
      `${name('stage')} is ${describeValue(progress.stage)}; expected ${PREFILL_STAGES.join(' or ')}.`,
    );
  const total = integer(progress.total, name('total'), 1, Number.MAX_SAFE_INTEGER);
  return {
    stage: progress.stage as PrefillProgress['stage'],
    done: integer(progress.done, name('done'), 0, total),
    total,
    ...(progress.nextRunMs === undefined
      ? {}
      : { nextRunMs: finite(progress.nextRunMs, name('nextRunMs'), 0, Number.MAX_SAFE_INTEGER) }),
  };
}

/** Base64 text of `bytes` decoded bytes; rounds up to whole 4-character groups. */
export function base64Length(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

/** The bytes base64 text decodes to (padding counted), without decoding it. */
export function decodedLength(base64: string): number {
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  return Math.floor((base64.length * 3) / 4) - padding;
}

function parseImage(value: unknown, field: string): ImageAttachment {
  const image = record(value, field);
  const name = string(image.name, `${field}.name`);
  const data = image.dataBase64;
  if (typeof data !== 'string')
    throw invalidParams(`${field}.dataBase64 is ${describeValue(data)}; expected the image file as base64 text.`);
  if (data.length > base64Length(MAX_IMAGE_BYTES)) {
    throw invalidParams(
      `${field} (${name}) is larger than ${MAX_IMAGE_BYTES / (1024 * 1024)} MiB; use a smaller image.`,
    );
  }
  if (data.length === 0 || data.length % 4 !== 0 || !BASE64.test(data)) {
    throw invalidParams(`${field}.dataBase64 (${name}) is not base64 text.`);
  }
  return { name, dataBase64: data };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function record(value: unknown, field: string): Record<string, unknown> {
  if (!isRecord(value)) throw invalidParams(`${field} is ${describeValue(value)}; expected an object.`);
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function string(value: unknown, field: string): string {
  if (typeof value !== 'string') throw invalidParams(`${field} is ${describeValue(value)}; expected a string.`);
  return value;
}

function nonEmptyString(value: unknown, field: string): string {
  const text = string(value, field);
  if (text.trim() === '') throw invalidParams(`${field} is empty.`);
  return text;
}

function finite(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    const from = min === Number.MIN_VALUE ? 'just above 0' : min;
    throw invalidParams(
      `${field} is ${describeValue(value)}; expected ` +
        (max === Infinity ? `a finite number from ${from}.` : `a number from ${from} to ${max}.`),
    );
  }
  return value;
}

function integer(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidParams(`${field} is ${describeValue(value)}; expected a whole number from ${min} to ${max}.`);
  }
  return value;
}
