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
}

/** More characters than any token spells: an answer past max_tokens × this is a server that ignores max_tokens. */
const MAX_CHARS_PER_TOKEN = 256;
/** How fast a server's progress reaches the reply (then the latest report): a server may send them by the thousand. */
const PROGRESS_RATE = { burst: 50, perSecond: 10 };
/** HTTP status → the kind of engine error the extension offers a fix for. */
const KINDS: Record<number, EngineErrorKind> = { 400: 'input', 401: 'input', 404: 'input', 413: 'image', 429: 'input' };

export class RemoteEngine implements AnswerEngine {
  private readonly client: OpenAI;
  private model: Promise<string> | undefined;
  private readonly inFlight = new Set<AbortController>();

  constructor(private readonly options: RemoteEngineOptions) {
    // The key may be absent (a server on 127.0.0.1); the client then sends a placeholder no server checks.
    this.client = new OpenAI({ baseURL: options.baseUrl, apiKey: options.apiKey ?? 'none', maxRetries: 0 });
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
    let text = '';
    let stopReason: StopReason = 'stop-token';
    let stats: AnswerStats | undefined;
    const progress = listeners.progress && rateLimited(listeners.progress, PROGRESS_RATE);
    try {
      const model = await this.modelId();
      const { reduction } = question;
      const body = {
        model,
        stream: true as const,
        stream_options: { include_usage: true },
        max_tokens: question.maxNewTokens,
        temperature: question.temperature,
        top_p: question.topP,
        seed: question.seed,
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
      const stream = await this.client.chat.completions.create(body, { signal: controller.signal });
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
            stopReason = 'max-tokens';
            break;
          }
        }
        if (choice?.finish_reason) stopReason = choice.finish_reason === 'length' ? 'max-tokens' : 'stop-token';
        const extension = (chunk as { ficoco?: { stats?: unknown; progress?: unknown } }).ficoco;
        if (extension?.progress !== undefined && progress) {
          // Progress only labels the wait: a report this client cannot read (a newer server's) is passed over.
          const report = readProgress(extension.progress);
          if (report) progress.report(report);
        }
        if (extension?.stats !== undefined) stats = this.statsOf(extension.stats);
      }
    } catch (error) {
      if (!controller.signal.aborted) throw this.engineError(error);
      stopReason = 'cancelled';
    } finally {
      progress?.drop();
      subscription?.dispose();
      this.inFlight.delete(controller);
    }
    return { text, stopReason, ...(stats ? { stats } : {}) };
  }

  /** Cancels every question in flight. */
  stop(): void {
    for (const controller of this.inFlight) controller.abort();
  }

  dispose(): void {
    this.stop();
  }

  /** The server's model: the first (for `ficoco serve`, the only) one it lists. */
  private modelId(): Promise<string> {
    this.model ??= this.client.models.list().then(
      (page) => {
        const id = page.data[0]?.id;
        if (!id) throw new EngineError(`The engine server at ${this.options.baseUrl} lists no model.`, 'model-folder');
        return id;
      },
      (error: unknown) => {
        this.model = undefined;
        throw this.engineError(error);
      },
    );
    return this.model;
  }

  private statsOf(value: unknown): AnswerStats {
    try {
      return parseAnswerStats(value, 'ficoco.stats');
    } catch (error) {
      throw new EngineError(
        `The engine server at ${this.options.baseUrl} sent stats FiCoCo cannot read: ${(error as Error).message}`,
        'internal',
      );
    }
  }

  private engineError(error: unknown): EngineError {
    if (error instanceof EngineError) return error;
    const where = `the engine server at ${this.options.baseUrl}`;
    if (error instanceof OpenAI.APIConnectionError)
      return new EngineError(`Could not reach ${where}: ${error.message}. Is it running?`, 'crashed');
    if (error instanceof OpenAI.APIError) {
      const status = error.status ?? 0;
      const hint =
        status === 401
          ? ' Set its key with "FiCoCo: Set Engine API Key".'
          : status === 429
            ? ` It is busy; try again${error.headers?.get('retry-after') ? ` in ${error.headers.get('retry-after')} s` : ''}.`
            : '';
      const code = (error as { code?: unknown }).code;
      const kind = code === 'invalid_image' ? 'image' : code === 'invalid_reduction' ? 'reduction' : KINDS[status];
      return new EngineError(`${where} answered ${status}: ${error.message}${hint}`, kind ?? 'internal');
    }
    return new EngineError(`${where} failed: ${error instanceof Error ? error.message : String(error)}`, 'internal');
  }
}

/**
 * Passes reports on as they come while they come at most `perSecond` a second on average, `burst` at once; past that
 * rate, the latest one each time the rate allows.
 */
function rateLimited<T>(deliver: (report: T) => void, { burst, perSecond }: { burst: number; perSecond: number }) {
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
      timer = setTimeout(deliverPending, ((1 - allowance) * 1000) / perSecond);
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
