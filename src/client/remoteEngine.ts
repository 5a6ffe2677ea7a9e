/**
 * An engine on another machine behind OpenAI's Chat Completions API: `ficoco serve`, or any server that speaks it
 * (vLLM, Ollama, llama.cpp's server, LM Studio). Questions go as streamed chat completions through the official
 * `openai` client with the reduction in the `ficoco` field; `ficoco serve` answers with the engine's stats in the
 * last chunk, other servers without them (their answers then carry none: reduction is not available there). Asked for
 * it, `ficoco serve` also streams the prefill's progress before the answer, as the local engine reports it.
 */
import OpenAI from 'openai';
import type { CancellationToken } from 'vscode-jsonrpc';
import { budgetLabel } from '../common/budget';
import { IMAGE_MIME_TYPES, detectImageFormat } from '../common/imageFile';
import { NO_REDUCTION } from '../common/reductionChoice';
import type { PrefillProgress } from '../common/prefillProgress';
import {
  type AnswerStats,
  type EngineErrorKind,
  MAX_NEW_TOKENS_LIMIT,
  type StopReason,
  parseAnswerStats,
  parsePrefillProgress,
} from '../protocol/engine';
import {
  type AnswerEngine,
  type AnswerListeners,
  type AskOptions,
  type EngineAnswer,
  EngineError,
} from './engineClient';

export interface RemoteEngineOptions {
  /** e.g. http://gpu-box:8080/v1 */
  baseUrl: string;
  /** sent as `Authorization: Bearer`; servers on this machine usually need none */
  apiKey?: string;
  /** the model to ask, as GET /v1/models lists it (ficoco.engineModel); unset or '': the server's only model */
  model?: string;
  /** how long a request waits for the response's headers (HEADERS_TIMEOUT_MS; tests shorten it) */
  headersTimeoutMs?: number;
}

/**
 * How long a request waits for the response's headers: another server sends them with the first token, after loading
 * the model and reading the prompt (minutes on a CPU); `ficoco serve` at once when the request waits in its queue.
 * Within the 300 s Node's fetch waits itself, so that the message says what happened.
 */
const HEADERS_TIMEOUT_MS = 240_000;
/** Models named in an error about the server's list: Ollama lists every model pulled, often dozens. */
const MAX_MODELS_NAMED = 8;
/** More characters than any token spells: an answer past max_tokens × this is a server that ignores max_tokens. */
const MAX_CHARS_PER_TOKEN = 256;
/** How fast a server's progress reaches the reply (then the latest report): a server may send them by the thousand. */
const PROGRESS_RATE = { burst: 50, perSecond: 10 };
/** HTTP status → the kind of engine error the extension offers a fix for. */
const KINDS: Record<number, EngineErrorKind> = { 400: 'input', 401: 'input', 404: 'input', 413: 'image', 429: 'input' };
/** `ficoco serve`'s error codes (ENGINE_ERRORS, src/server/app.ts) → the kind, before the status decides. */
const CODE_KINDS: Record<string, EngineError['kind']> = {
  invalid_image: 'image',
  invalid_reduction: 'reduction',
  engine_restarting: 'crashed',
  model_loading: 'not-loaded',
};
/** One server-sent event: more than the largest stats read (8 images' patch grids of at most 1 Mi patches each). */
const MAX_EVENT_BYTES = 16 * 2 ** 20;
/** A whole response: stats, progress and chunk envelopes, and the longest answer with each character escaped in JSON. */
const MAX_RESPONSE_BYTES = 64 * 2 ** 20 + MAX_NEW_TOKENS_LIMIT * MAX_CHARS_PER_TOKEN * 6;
/** How a server-sent event ends: a blank line, in any of the three line endings the format allows. */
const EVENT_ENDS = ['\n\n', '\r\r', '\r\n\r\n'].map((end) => Buffer.from(end));

/**
 * No answer from the server at all (refused, unresolved, timed out): what fixes it is the server or its address in
 * ficoco.engine, not the local engine's log.
 */
export class UnreachableServerError extends EngineError {
  constructor(message: string) {
    super(message, 'crashed');
    this.name = 'UnreachableServerError';
  }
}

/**
 * The server refused what the user set up: its key (401), its address, which lists no models there (404, or an empty
 * list), or the model to ask, which it does not list or which is not set where it lists several.
 */
export class ServerSetupError extends EngineError {
  constructor(
    message: string,
    readonly fix: 'key' | 'address' | 'model',
  ) {
    super(message, 'input');
    this.name = 'ServerSetupError';
  }
}

export class RemoteEngine implements AnswerEngine {
  private readonly client: OpenAI;
  /** the model to ask, once the server has listed it */
  private model: string | undefined;
  private readonly inFlight = new Set<AbortController>();

  constructor(private readonly options: RemoteEngineOptions) {
    // The key may be absent (a server on 127.0.0.1); the client then sends a placeholder no server checks.
    this.client = new OpenAI({
      baseURL: options.baseUrl,
      apiKey: options.apiKey ?? 'none',
      maxRetries: 0,
      fetch: (input, init) => this.fetch(input, init),
    });
  }

  /** No local process. */
  get processId(): undefined {
    return undefined;
  }

  async ask(
    _model: unknown,
    question: AskOptions,
    listeners: AnswerListeners,
    token?: CancellationToken,
  ): Promise<EngineAnswer> {
    const controller = new AbortController();
    this.inFlight.add(controller);
    const subscription = token?.onCancellationRequested(() => controller.abort());
    // A token cancelled already fires late (on a timer) or never (CancellationToken.Cancelled): nothing is sent.
    if (token?.isCancellationRequested) controller.abort();
    let text = '';
    /** set by the chunk that finishes the answer, or where a server that goes on past max_tokens is cut off */
    let finish: StopReason | undefined;
    let stats: AnswerStats | undefined;
    /** a progress listener that threw when the rate limit's timer called it: it fails the answer, as from the stream */
    let listenerFailure: { error: unknown } | undefined;
    const progress =
      listeners.progress &&
      rateLimited(listeners.progress, PROGRESS_RATE, (error) => {
        listenerFailure = { error };
        controller.abort();
      });
    try {
      const model = await this.modelId(controller.signal);
      const { reduction } = question;
      const body = {
        model,
        stream: true as const,
        stream_options: { include_usage: true },
        max_tokens: question.maxNewTokens,
        temperature: question.temperature,
        top_p: question.topP,
        seed: question.seed,
        // Not OpenAI's fields (ficoco serve's, vLLM's, llama.cpp's): sent only when asked for.
        ...(question.topK !== undefined ? { top_k: question.topK } : {}),
        ...(question.minP !== undefined ? { min_p: question.minP } : {}),
        ...(question.repetitionPenalty !== undefined ? { repetition_penalty: question.repetitionPenalty } : {}),
        messages: [
          ...(question.history ?? []).map(({ role, text: content }) => ({ role, content })),
          {
            role: 'user' as const,
            content: [
              ...question.images.map((image) => ({
                type: 'image_url' as const,
                image_url: { url: `data:${mimeTypeOf(image.dataBase64)};base64,${image.dataBase64}` },
              })),
              { type: 'text' as const, text: question.question },
            ],
          },
        ],
        ficoco: {
          ...(reduction
            ? {
                method: reduction.method,
                ...(reduction.budget ? { budget: budgetLabel(reduction.budget) } : {}),
                ...(Object.keys(reduction.params ?? {}).length > 0 ? { params: reduction.params } : {}),
              }
            : { method: NO_REDUCTION }),
          ...(listeners.progress ? { progress: true } : {}),
        },
      };
      const open = (asked: typeof body) =>
        this.client.chat.completions.create(asked, { signal: controller.signal }).withResponse();
      const { data: stream, response } = await open(body).catch(async (error: unknown) => {
        // The server may have been started again with another model since it was listed: list it again, and ask the
        // model it serves now, once.
        if (!(error instanceof OpenAI.NotFoundError)) throw error;
        this.model = undefined;
        const now = await this.modelId(controller.signal);
        if (now === model) throw error;
        return open({ ...body, model: now });
      });
      // A proxy's sign-in page, or a server that ignores stream: true, would otherwise read as an empty answer.
      const type = response.headers.get('content-type') ?? 'no content type';
      if (!/^text\/event-stream\b/i.test(type)) {
        stream.controller.abort();
        throw new EngineError(
          `${this.server} answered with ${type}, not a stream of server-sent events (text/event-stream): is ` +
            `${this.options.baseUrl} an OpenAI-compatible server, and not a proxy's sign-in page?`,
          'internal',
        );
      }
      const longest = question.maxNewTokens * MAX_CHARS_PER_TOKEN;
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (choice?.delta.content) {
          progress?.drop();
          const piece = choice.delta.content.slice(0, longest - text.length);
          text += piece;
          if (piece) listeners.text(piece);
          // A server that goes on past max_tokens is cut off there, as an answer at its length limit.
          if (piece.length < choice.delta.content.length) {
            finish = 'max-tokens';
            break;
          }
        }
        if (choice?.finish_reason) finish = choice.finish_reason === 'length' ? 'max-tokens' : 'stop-token';
        const extension = (chunk as { ficoco?: { stats?: unknown; progress?: unknown } }).ficoco;
        if (extension?.progress !== undefined && progress) {
          // Progress only labels the wait: a report this client cannot read (a newer server's) is passed over.
          const report = readProgress(extension.progress);
          if (report) progress.report(report);
        }
        if (extension?.stats !== undefined) stats = this.statsOf(extension.stats, question.images.length);
      }
    } catch (error) {
      if (!controller.signal.aborted) throw this.engineError(error);
    } finally {
      progress?.drop();
      subscription?.dispose();
      this.inFlight.delete(controller);
    }
    if (listenerFailure) throw listenerFailure.error;
    // The client ends a stream it aborted as quietly as a finished one: only the finish chunk tells them apart.
    if (!finish && !controller.signal.aborted)
      throw new EngineError(
        `${this.server} ended the answer after ${text.length} characters without finishing it (no finish_reason): ` +
          `the connection or a proxy on the way cut it off.`,
        'internal',
      );
    // As the local engine: cancelled before the first token, the question fails; after it, the partial answer stays.
    if (!finish && !text) throw new EngineError('The question was cancelled before its answer began.', 'cancelled');
    return { text, stopReason: finish ?? 'cancelled', ...(stats ? { stats } : {}) };
  }

  /** Cancels every question in flight. */
  stop(): void {
    for (const controller of this.inFlight) controller.abort();
  }

  dispose(): void {
    this.stop();
  }

  /**
   * The model to ask: the one set, or the server's only one (`ficoco serve` lists one). Each question lists the
   * server's models until one has (under its own signal, so that Stop ends a listing the server never answers); then
   * the id is kept.
   */
  private async modelId(signal: AbortSignal): Promise<string> {
    if (this.model) return this.model;
    const page = await this.client.models.list({ signal }).catch((error: unknown) => {
      // No model listing at the address: a base URL without the API's path (…:8080 for …:8080/v1) finds none.
      throw this.engineError(
        error,
        "Is ficoco.engine the API's base URL, with its path (e.g. http://gpu-box:8080/v1)?",
      );
    });
    const listed = page.data.map(({ id }) => id);
    if (listed.length === 0)
      throw new ServerSetupError(
        `${this.server} lists no models: load or pull one on it, or set ficoco.engine to a server that serves one.`,
        'address',
      );
    const { model } = this.options;
    const chosen = model ? listedName(model, listed) : undefined;
    if (model && !chosen)
      throw new ServerSetupError(
        `${this.server} does not list ${model}, the model in ficoco.engineModel; it lists ${modelNames(listed)}.`,
        'model',
      );
    // Asking the first of several would answer with a model the user did not choose.
    if (!model && listed.length > 1)
      throw new ServerSetupError(
        `${this.server} serves ${listed.length} models (${modelNames(listed)}); set ficoco.engineModel to the one ` +
          'to ask.',
        'model',
      );
    this.model = chosen ?? listed[0];
    return this.model;
  }

  /** "The engine server at URL", to begin a message */
  private get server(): string {
    return `The engine server at ${this.options.baseUrl}`;
  }

  /**
   * fetch that waits for the headers at most headersTimeoutMs, refuses redirects, and passes the body on in whole
   * server-sent events, within the size limits
   */
  private async fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const { headersTimeoutMs = HEADERS_TIMEOUT_MS } = this.options;
    // The bound ends with the headers: the answer after them takes as long as it takes, until Stop.
    const bounded = new AbortController();
    const stop = () => bounded.abort();
    init?.signal?.addEventListener('abort', stop, { once: true });
    if (init?.signal?.aborted) stop();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, headersTimeoutMs);
    // A redirect would send the question and its images again, to an address the user did not set.
    const response = await fetch(input, { ...init, signal: bounded.signal, redirect: 'manual' })
      .catch((error: unknown) => {
        if (!timedOut) throw error;
        throw new EngineError(
          `${this.server} took the request but sent nothing for ${headersTimeoutMs / 1000} s: it is stuck, or a ` +
            'proxy on the way holds the request. Restart the server, or ask again.',
          'internal',
        );
      })
      .finally(() => clearTimeout(timer));
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel();
      throw new EngineError(
        `${this.server} redirected the request (${response.status}) to ` +
          `${response.headers.get('location') ?? 'another address'}; FiCoCo does not follow redirects, which would ` +
          `send your question and images elsewhere. Set ficoco.engine to the address that answers.`,
        'internal',
      );
    }
    if (!response.body) return response;
    const body = response.body.pipeThrough(
      wholeEvents((message) => new EngineError(`${this.server} ${message}`, 'internal')),
    );
    const { status, statusText, headers } = response;
    if (status < 400) return new Response(body, { status, statusText, headers });
    // An error in the shape the client reads its message from, whatever the server or a proxy on the way sent.
    const text = await new Response(body).text();
    const json = new Headers(headers);
    json.set('content-type', 'application/json');
    return new Response(JSON.stringify(openAiError(text, `${status} ${statusText}`.trim())), {
      status,
      statusText,
      headers: json,
    });
  }

  /** Stats read field by field, about as many images as the question sent (each one is a grid the overlay draws). */
  private statsOf(value: unknown, images: number): AnswerStats {
    try {
      return parseAnswerStats(value, 'ficoco.stats', images);
    } catch (error) {
      throw new EngineError(`${this.server} sent stats FiCoCo cannot read: ${(error as Error).message}`, 'internal');
    }
  }

  /** `error` as one EngineError; `notFoundHint` follows a 404's message. */
  private engineError(error: unknown, notFoundHint?: string): EngineError {
    if (error instanceof EngineError) return error;
    // What this client's fetch refused reaches here as the cause of a connection error.
    if (error instanceof OpenAI.APIConnectionError && error.cause instanceof EngineError) return error.cause;
    if (error instanceof OpenAI.APIConnectionError)
      return new UnreachableServerError(
        `Could not reach the engine server at ${this.options.baseUrl}: ${error.message.replace(/\.$/, '')}. ` +
          'Is it running, and is ficoco.engine its address?',
      );
    if (error instanceof OpenAI.APIError) {
      const { status } = error;
      const hint =
        status === 401
          ? ' Set its key with "FiCoCo: Set Engine API Key".'
          : status === 429
            ? ` It is busy; try again${error.headers?.get('retry-after') ? ` in ${error.headers.get('retry-after')} s` : ''}.`
            : status === 404 && notFoundHint
              ? ` ${notFoundHint}`
              : '';
      const code = typeof error.code === 'string' ? error.code : undefined;
      const kind = (code && CODE_KINDS[code]) || (status && KINDS[status]) || 'internal';
      // The server's own message, without the status the client puts before it.
      const said = error.error as { message?: unknown } | undefined;
      const message = sentence(typeof said?.message === 'string' ? said.message : error.message);
      // An error event in a stream that had begun has no status of its own.
      const what = status ? `answered ${status}` : 'sent an error during the answer';
      const text = `${this.server} ${what}: ${message}${hint}`;
      if (status === 401) return new ServerSetupError(text, 'key');
      if (status === 404 && notFoundHint) return new ServerSetupError(text, 'address');
      return new EngineError(text, kind);
    }
    // The connection ended while the answer streamed (fetch's network failures are TypeErrors with a cause).
    if (error instanceof TypeError && error.cause instanceof Error)
      return new EngineError(
        `${this.server} closed the connection during the answer (${error.message}: ${error.cause.message}): the ` +
          'server stopped, or a proxy or the network on the way cut it off. Ask again.',
        'internal',
      );
    return new EngineError(
      `${this.server} failed: ${error instanceof Error ? error.message : String(error)}`,
      'internal',
    );
  }
}

/** Longest server error message shown as the server wrote it; an error page is named by its title instead. */
const MAX_ERROR_MESSAGE_CHARS = 300;

/**
 * An error response's body as OpenAI's error object, which the client takes its message from: OpenAI's own shape as
 * it came; a server's other shapes (`{"message"}`, `{"error": "text"}`) with their message; an HTML page (a proxy's
 * error page) by its title; other text on one line, cut short; an empty body by its status line.
 */
function openAiError(text: string, statusLine: string): { error: Record<string, unknown> } {
  const error = (message: string, from: Record<string, unknown> = {}) => ({
    error: {
      message,
      type: typeof from.type === 'string' ? from.type : null,
      param: typeof from.param === 'string' ? from.param : null,
      code: typeof from.code === 'string' ? from.code : null,
    },
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (parsed && typeof parsed === 'object') {
    const body = parsed as Record<string, unknown>;
    const inner = body.error;
    // OpenAI's own shape (ficoco serve's, whose messages say what to do) as it came.
    if (inner && typeof inner === 'object' && typeof (inner as { message?: unknown }).message === 'string')
      return body as { error: Record<string, unknown> };
    if (typeof inner === 'string') return error(oneLine(inner));
    if (typeof body.message === 'string') return error(oneLine(body.message), body);
  }
  if (/^\s*</.test(text)) {
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1];
    return error(
      `a web page${title?.trim() ? ` ("${oneLine(title)}")` : ''} instead of an API error: is a proxy on the way, ` +
        'and is ficoco.engine the address of the server itself?',
    );
  }
  return error(text.trim() ? oneLine(text) : statusLine);
}

/**
 * `model` as the server lists it: as written, or, where it has no tag (`llava`, `hf.co/user/repo`), its `:latest` as
 * Ollama reads such a name (`ollama run llava`); undefined where neither is listed.
 */
function listedName(model: string, listed: readonly string[]): string | undefined {
  if (listed.includes(model)) return model;
  // The tag follows the last colon of the name's last segment; a colon before a slash is a registry's port.
  const tagged = /:[^/]*$/.test(model);
  return !tagged && listed.includes(`${model}:latest`) ? `${model}:latest` : undefined;
}

/** The server's models for a message: the first MAX_MODELS_NAMED, then how many more. */
function modelNames(listed: readonly string[]): string {
  const named = listed.slice(0, MAX_MODELS_NAMED).join(', ');
  return listed.length > MAX_MODELS_NAMED ? `${named} and ${listed.length - MAX_MODELS_NAMED} more` : named;
}

/** Text on one line, at most MAX_ERROR_MESSAGE_CHARS characters. */
function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > MAX_ERROR_MESSAGE_CHARS ? `${line.slice(0, MAX_ERROR_MESSAGE_CHARS - 1)}…` : line;
}

/** A message that ends as a sentence, so that a hint can follow it. */
function sentence(message: string): string {
  return /[.!?…]$/.test(message) ? message : `${message}.`;
}

/**
 * Passes a response body on in whole server-sent events: the client's decoders keep an unfinished event and search it
 * again with each piece that arrives, which takes quadratic time on one that never ends. An event over MAX_EVENT_BYTES
 * or a response over MAX_RESPONSE_BYTES fails the stream with `tooLarge`'s error.
 */
function wholeEvents(tooLarge: (message: string) => Error): TransformStream<Uint8Array, Uint8Array> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let total = 0;
  /** the last bytes seen, for an event end split between two pieces */
  let recent = Buffer.alloc(0);
  return new TransformStream({
    transform(chunk, controller) {
      total += chunk.length;
      if (total > MAX_RESPONSE_BYTES)
        throw tooLarge(`sent more than ${MAX_RESPONSE_BYTES / 2 ** 20} MiB for one answer; FiCoCo stopped reading.`);
      let piece = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const window = Buffer.concat([recent, piece]);
      const ends = EVENT_ENDS.map((end) => {
        const at = window.lastIndexOf(end);
        return at < 0 ? 0 : at + end.length;
      });
      const end = Math.max(...ends) - recent.length;
      recent = Buffer.from(window.subarray(-3));
      if (end > 0) {
        controller.enqueue(Buffer.concat([...held, piece.subarray(0, end)]));
        [held, heldBytes, piece] = [[], 0, piece.subarray(end)];
      }
      if (piece.length > 0) held.push(piece);
      heldBytes += piece.length;
      if (heldBytes > MAX_EVENT_BYTES)
        throw tooLarge(
          `sent more than ${MAX_EVENT_BYTES / 2 ** 20} MiB without ending an event (a blank line); FiCoCo stopped reading.`,
        );
    },
    flush(controller) {
      if (heldBytes > 0) controller.enqueue(Buffer.concat(held));
    },
  });
}

/**
 * Passes reports on as they come while they come at most `perSecond` a second on average, `burst` at once; past that
 * rate, the latest one each time the rate allows. `deliver` throwing when called by report() throws there; from the
 * timer, it goes to `onTimerError`.
 */
function rateLimited<T>(
  deliver: (report: T) => void,
  { burst, perSecond }: { burst: number; perSecond: number },
  onTimerError: (error: unknown) => void,
) {
  let allowance = burst;
  let countedAt = performance.now();
  let pending: { report: T } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const deliverPending = () => {
    timer = undefined;
    const now = performance.now();
    allowance = Math.min(burst, allowance + ((now - countedAt) * perSecond) / 1000);
    countedAt = now;
    if (!pending) return;
    if (allowance < 1) {
      timer = setTimeout(
        () => {
          try {
            deliverPending();
          } catch (error) {
            onTimerError(error);
          }
        },
        ((1 - allowance) * 1000) / perSecond,
      );
      return;
    }
    allowance -= 1;
    const { report } = pending;
    pending = undefined;
    deliver(report);
  };
  return {
    report(report: T): void {
      pending = { report };
      if (!timer) deliverPending();
    },
    /** Forgets a report not yet passed on: the answer has begun, or the stream ended. */
    drop(): void {
      clearTimeout(timer);
      timer = undefined;
      pending = undefined;
    },
  };
}

/** `ficoco serve`'s progress field, or undefined where it cannot be read. */
function readProgress(value: unknown): PrefillProgress | undefined {
  try {
    return parsePrefillProgress(value, 'ficoco.progress');
  } catch {
    return undefined;
  }
}

/** The image's MIME type from its first bytes (the attachment's base64). */
function mimeTypeOf(dataBase64: string): string {
  const format = detectImageFormat(Buffer.from(dataBase64.slice(0, 64), 'base64'));
  return format ? IMAGE_MIME_TYPES[format] : 'application/octet-stream';
}
