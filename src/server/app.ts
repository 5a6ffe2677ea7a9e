/**
 * `ficoco serve`'s HTTP API (Fastify): OpenAI's Chat Completions with images as data: URLs, streamed as server-sent
 * events or not, the model list, health, readiness and metrics. The reduction is an extension field (`ficoco`), and
 * every answer carries the engine's bookkeeping in `ficoco.stats` and its figures in `usage.ficoco`.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, STATUS_CODES, maxHeaderSize } from 'node:http';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchemaValidationError,
} from 'fastify';
import { type CancellationToken, CancellationTokenSource } from 'vscode-jsonrpc/node';
import { type EngineClient, EngineError } from '../client/engineClient';
import { FicocoError } from '../common/errors';
import { isLoopback } from '../common/loopback';
import { describeValue } from '../protocol/describe';
import type { AnswerStats, AskResult, EngineErrorKind, StopReason } from '../protocol/engine';
import {
  BadChatRequest,
  CHAT_COMPLETION_BODY,
  type ChatCompletionBody,
  type ChatQuestion,
  type ServerDefaults,
  chatQuestion,
} from './chatRequest';
import { serverMetrics } from './metrics';
import { StopStrings } from './stopStrings';
import { LeftQueueError, QueueFullError, type WorkerPool } from './workerPool';

export interface ServerOptions {
  pool: WorkerPool;
  /** the name clients use in `model`, listed by GET /v1/models */
  modelId: string;
  /** when set, /v1 and /metrics need `Authorization: Bearer <apiKey>` */
  apiKey?: string;
  /** largest request body in bytes: images arrive inside it as base64 */
  bodyLimit: number;
  defaults: ServerDefaults;
  /** how long a client has to send a whole request, headers and body (REQUEST_TIMEOUT_MS; tests shorten it) */
  requestTimeoutMs?: number;
  /** how far a chat completion's body may lag behind BODY_MIN_BYTES_PER_SECOND (BODY_GRACE_MS; tests shorten it) */
  bodyGraceMs?: number;
  /** how often a stream waiting for a worker gets a comment (KEEP_ALIVE_MS; tests shorten it) */
  keepAliveMs?: number;
}

/** What a request handler leaves: the JSON body (not for a stream, which wrote its own) and the engine's figures. */
interface Answered {
  body?: Record<string, unknown>;
  stats: AnswerStats;
}

/** OpenAI's error object; `type` and `code` are the values its clients branch on. */
interface OpenAiError {
  status: number;
  message: string;
  type: 'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error' | 'not_found_error';
  code: string | null;
  param?: string | null;
  headers?: Record<string, string>;
}

/** An engine failure as HTTP: the request's fault (4xx) or the server's (5xx). */
const ENGINE_ERRORS: Record<EngineErrorKind | 'crashed', Pick<OpenAiError, 'status' | 'type' | 'code'>> = {
  image: { status: 400, type: 'invalid_request_error', code: 'invalid_image' },
  input: { status: 400, type: 'invalid_request_error', code: null },
  reduction: { status: 400, type: 'invalid_request_error', code: 'invalid_reduction' },
  cancelled: { status: 499, type: 'invalid_request_error', code: 'cancelled' },
  crashed: { status: 503, type: 'server_error', code: 'engine_restarting' },
  'not-loaded': { status: 503, type: 'server_error', code: 'model_loading' },
  'model-folder': { status: 500, type: 'server_error', code: null },
  weights: { status: 500, type: 'server_error', code: null },
  config: { status: 500, type: 'server_error', code: null },
  provider: { status: 500, type: 'server_error', code: null },
  memory: { status: 500, type: 'server_error', code: null },
  download: { status: 500, type: 'server_error', code: null },
  internal: { status: 500, type: 'server_error', code: null },
};

/** Routes a client reaches without the API key: the health and readiness probes. */
const OPEN_ROUTES = new Set(['/health', '/ready']);
const CHAT_ROUTE = '/v1/chat/completions';
/** Time to send a request: a 32 MiB image as base64 at 3 Mbit/s. The answer after it may take as long as it takes. */
const REQUEST_TIMEOUT_MS = 120_000;
/** A comment this often while a stream waits for a worker: well within the 300 s Node's fetch waits between bytes. */
const KEEP_ALIVE_MS = 15_000;
/** Open connections, idle keep-alive ones included: well below the 1024 open files a process usually gets. */
const MAX_CONNECTIONS = 512;
/**
 * A chat completion's body holds a queue place while it arrives, so it must keep pace (as Apache's mod_reqtimeout
 * MinRate): within BODY_GRACE_MS plus a second per BODY_MIN_BYTES_PER_SECOND it brought. 1 Mbit/s is a tenth of a slow
 * LAN's 10 Mbit/s (the default largest body, 44 MiB, takes 37 s there); a body trickled a byte at a time, or one that
 * never comes, gives its place back after 10 s instead of REQUEST_TIMEOUT_MS.
 */
const BODY_MIN_BYTES_PER_SECOND = 125_000;
const BODY_GRACE_MS = 10_000;

/** A 408 for a chat completion's body that fell behind BODY_MIN_BYTES_PER_SECOND by more than `graceMs`. */
function bodyTooSlow(graceMs: number): OpenAiError {
  return {
    status: 408,
    message:
      `The request body arrived slower than ${(BODY_MIN_BYTES_PER_SECOND * 8) / 1e6} Mbit/s (more than ` +
      `${graceMs / 1000} s behind); check the client's connection.`,
    type: 'invalid_request_error',
    code: 'request_timeout',
    // The client may still be sending: the connection closes after the answer rather than read the rest.
    headers: { connection: 'close' },
  };
}

/** A 404 for a model name this server does not serve. */
function modelNotFound(asked: string, served: string): OpenAiError {
  return {
    status: 404,
    message: `The model ${asked} is not served here; this server has ${served} (GET /v1/models).`,
    type: 'invalid_request_error',
    code: 'model_not_found',
    param: 'model',
  };
}

export function buildServer(options: ServerOptions): FastifyInstance {
  const { pool, modelId } = options;
  const requestTimeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const bodyGraceMs = options.bodyGraceMs ?? BODY_GRACE_MS;
  const app = Fastify({
    bodyLimit: options.bodyLimit,
    logger: false,
    // Fastify's default (none) lets a client trickle a body forever. The limit covers receiving the request, not the
    // answer; given to Node's constructor too, its headers timeout stays within it (or the limit is not applied), and
    // Node looks for expired requests every tenth of it.
    requestTimeout,
    http: { requestTimeout, headersTimeout: requestTimeout, connectionsCheckingInterval: requestTimeout / 10 },
    // OpenAI's fields are often "a string or a number"; the schema says so with type lists. Fastify's default strips
    // properties a schema does not allow, which would run `{"ficoco": {"budgett": "11%"}}` with no reduction asked.
    // Its default coercion would also unwrap a one-part content array into a string's branch and refuse it.
    // `discriminator` checks a content part's branch after its type, so a wrong type is one error; `verbose` gives
    // schemaRefusal the value refused.
    ajv: {
      customOptions: {
        allowUnionTypes: true,
        removeAdditional: false,
        coerceTypes: false,
        discriminator: true,
        verbose: true,
      },
    },
    // What Node refuses before a route (a request too slow, or not HTTP) is answered as OpenAI's clients read errors.
    clientErrorHandler: (error, socket) => {
      if ((error as NodeJS.ErrnoException).code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
      const refused = clientError(error, requestTimeout);
      const body = JSON.stringify({ error: errorBody(refused) });
      socket.end(
        `HTTP/1.1 ${refused.status} ${STATUS_CODES[refused.status]}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    },
  });
  app.server.maxConnections = MAX_CONNECTIONS;
  const metrics = serverMetrics({ depth: () => pool.queueDepth, busy: () => pool.busy, workers: () => pool.workers });
  /** Chat completions that reached the engine's queue: the handler records them, with the engine's figures. */
  const recorded = new WeakSet<FastifyRequest>();
  /** Chat completions admitted before their bodies: how each gives its place back (WorkerPool.admit). */
  const arriving = new WeakMap<FastifyRequest, () => void>();
  const created = Math.floor(Date.now() / 1000);

  app.addHook('onRequest', async (request, reply) => {
    // Without a key the server is for this machine alone: a web page rebound to 127.0.0.1 (DNS rebinding) can send
    // requests here, but they still name the page's host.
    if (!options.apiKey && !isLoopback(request.hostname))
      return sendError(reply, {
        status: 403,
        message:
          `This server has no API key, so it answers only requests addressed to localhost, 127.0.0.1 or [::1]; this ` +
          `one was addressed to ${request.hostname || 'no host'}. Behind a proxy, have it send the address it ` +
          `connects to as Host, or start the server with --api-key.`,
        type: 'invalid_request_error',
        code: 'host_not_allowed',
      });
    // By the route matched, not the raw URL (which a query or percent-encoding disguises): only the probes are open.
    if (!options.apiKey || OPEN_ROUTES.has(request.routeOptions.url ?? '')) return;
    // The scheme's name in any case, as HTTP defines it (RFC 9110, 11.1): some clients send "bearer".
    const token = /^bearer +(.*)$/i.exec(request.headers.authorization ?? '')?.[1];
    if (token === undefined || !sameSecret(token, options.apiKey))
      return sendError(reply, {
        status: 401,
        message: 'This server needs an API key: send Authorization: Bearer <key>.',
        type: 'authentication_error',
        code: 'invalid_api_key',
      });
  });

  // After the host and the key: a chat completion takes its place before its body (tens of megabytes) is read, so a
  // full queue refuses at once what it would otherwise take in, parse and decode only to refuse it.
  app.addHook('onRequest', async (request, reply) => {
    if (request.method !== 'POST' || request.routeOptions.url !== CHAT_ROUTE) return;
    let arrived: () => void;
    try {
      arrived = pool.admit();
    } catch (error) {
      // Read and dropped first, as a 413's body: an answer while the client still sends can reach it as a reset.
      await drained(request.raw);
      return sendError(reply, toOpenAiError(error as Error));
    }
    // The body has arrived (or the client left): the request now waits in the pool's queue or runs, or has failed.
    request.raw.once('close', arrived);
    arriving.set(request, arrived);
    paceBody(request, reply, arrived);
  });

  app.addHook('onResponse', async (request, reply) => {
    // Refused before the queue (the key, the host, the schema, the body's size, the model's name): counted as sent.
    if (request.routeOptions.url === CHAT_ROUTE && !recorded.has(request)) metrics.record(reply.statusCode);
  });

  app.setErrorHandler(async (error: FastifyError, request, reply) => {
    // Fastify refuses an over-limit body unread and closes the connection; closing with unread bytes sends a reset,
    // which a client still sending sees instead of the 413. The rest is read and dropped first, within bounds.
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') await drained(request.raw);
    return sendError(reply, toOpenAiError(error));
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(
      reply,
      // The chat route asked with another method (a GET from a browser) is a wrong method, not a wrong address.
      new URL(request.url, 'http://host').pathname === CHAT_ROUTE
        ? {
            status: 405,
            message: `${request.method} ${CHAT_ROUTE}: send the chat completion request with POST.`,
            type: 'invalid_request_error',
            code: 'method_not_allowed',
            headers: { allow: 'POST' },
          }
        : {
            status: 404,
            message: `${request.method} ${request.url} is not part of this API.`,
            type: 'not_found_error',
            code: null,
          },
    ),
  );

  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/ready', async (_request, reply) =>
    pool.ready
      ? { status: 'ready', model: modelId, workers: pool.workers }
      : reply.code(503).send({ status: 'loading' }),
  );
  app.get('/metrics', async (_request, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  const model = { id: modelId, object: 'model', created, owned_by: 'ficoco' };
  app.get('/v1/models', async () => ({ object: 'list', data: [model] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request, reply) =>
    request.params.id === modelId ? model : sendError(reply, modelNotFound(request.params.id, modelId)),
  );

  app.post<{ Body: ChatCompletionBody }>(
    CHAT_ROUTE,
    { schema: { body: CHAT_COMPLETION_BODY } },
    async (request, reply) => {
      const body = request.body;
      if (body.model !== modelId) return sendError(reply, modelNotFound(body.model, modelId));
      const question = chatQuestion(body, options.defaults);
      const disconnected = new AbortController();
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) disconnected.abort();
      });
      recorded.add(request);
      // From here the request holds its place in the pool itself.
      arriving.get(request)?.();
      let keepAlive: NodeJS.Timeout | undefined;
      // A stream that waits for a worker opens now: clients bound their wait for response headers (Node's fetch to
      // 300 s), and a long queue must not look like a server that hangs. Comments keep it alive until it starts.
      const openWhileWaiting = () => {
        openStream(reply);
        reply.raw.write(': waiting for an engine worker\n\n');
        keepAlive = setInterval(() => reply.raw.write(': waiting\n\n'), options.keepAliveMs ?? KEEP_ALIVE_MS);
      };
      try {
        const answer = await pool.run(
          disconnected.signal,
          (client, token) => {
            clearInterval(keepAlive);
            return question.stream ? stream(client, token, question, reply) : complete(client, token, question);
          },
          question.stream ? openWhileWaiting : undefined,
        );
        // 499: the client went away and its answer stopped early (nginx's code for it).
        metrics.record(disconnected.signal.aborted ? 499 : 200, answer.stats);
        return question.stream ? reply : reply.send(answer.body);
      } catch (error) {
        const failure = toOpenAiError(error as Error);
        metrics.record(failure.status);
        if (reply.raw.headersSent) {
          // A stream already started: the error goes in the stream, as OpenAI's does.
          if (!reply.raw.writableEnded) {
            reply.raw.end(`data: ${JSON.stringify({ error: errorBody(failure) })}\n\n`);
          }
          return reply;
        }
        return sendError(reply, failure);
      } finally {
        clearInterval(keepAlive);
      }
    },
  );

  /**
   * Cuts off an admitted chat completion whose body falls behind (bodyTooSlow): its place is given back at once and it
   * gets a 408, or, answered already while the rest arrives (a 413), its connection is closed.
   */
  function paceBody(request: FastifyRequest, reply: FastifyReply, arrived: () => void): void {
    const socket = request.raw.socket;
    // The connection's count, not a 'data' listener: that would start the body flowing before Fastify reads it.
    const readBefore = socket.bytesRead;
    const started = performance.now();
    const check = () => {
      const deadline = started + bodyGraceMs + ((socket.bytesRead - readBefore) / BODY_MIN_BYTES_PER_SECOND) * 1000;
      const now = performance.now();
      if (now < deadline) {
        timer = setTimeout(check, deadline - now);
        return;
      }
      arrived();
      // Fastify checks reply.sent before each later step, so the body's parse ends here.
      if (!reply.sent) sendError(reply, bodyTooSlow(bodyGraceMs));
      else request.raw.destroy();
    };
    let timer = setTimeout(check, bodyGraceMs);
    const stop = () => clearTimeout(timer);
    request.raw.once('end', stop).once('close', stop);
  }

  /** A whole answer as one chat.completion object. */
  async function complete(client: EngineClient, token: CancellationToken, question: ChatQuestion): Promise<Answered> {
    const stops = new StopStrings(question.stop);
    const generation = new Generation(token);
    let text = '';
    const result = await client.ask(
      pool.model,
      question.ask,
      {
        text: (piece) => {
          text += stops.push(piece);
          if (stops.stopped) generation.stop();
        },
      },
      generation.token,
    );
    text += stops.flush();
    const body = {
      id: `chatcmpl-${randomUUID()}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: modelId,
      choices: [
        { index: 0, message: { role: 'assistant', content: text }, finish_reason: finishReason(result, stops) },
      ],
      usage: usageOf(result.stats),
      ficoco: { stats: result.stats },
    };
    return { body, stats: result.stats };
  }

  /** The answer as server-sent events of chat.completion.chunk objects, then `data: [DONE]`. */
  async function stream(
    client: EngineClient,
    token: CancellationToken,
    question: ChatQuestion,
    reply: FastifyReply,
  ): Promise<Answered> {
    const raw = reply.raw;
    const id = `chatcmpl-${randomUUID()}`;
    const write = (choices: unknown[], extra: Record<string, unknown> = {}) => {
      const created = Math.floor(Date.now() / 1000);
      raw.write(
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: modelId, choices, ...extra })}\n\n`,
      );
    };
    // Unless it waited for a worker, the stream opens with the engine's first report: a request it refuses before any
    // (a bad reduction) is an HTTP error, not a 200 carrying one.
    let begun = false;
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => {
      if (!begun) {
        if (!raw.headersSent) openStream(reply);
        write([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]);
        begun = true;
      }
      write(choices, extra);
    };
    const stops = new StopStrings(question.stop);
    const generation = new Generation(token);
    const send = (text: string) => {
      if (text) chunk([{ index: 0, delta: { content: text }, finish_reason: null }]);
    };
    const result = await client.ask(
      pool.model,
      question.ask,
      {
        text: (piece) => {
          send(stops.push(piece));
          if (stops.stopped) generation.stop();
        },
        // An empty delta is a valid chunk for every client; ours reads the field (`RemoteEngine`).
        ...(question.progress
          ? { progress: (progress) => chunk([{ index: 0, delta: {}, finish_reason: null }], { ficoco: { progress } }) }
          : {}),
      },
      generation.token,
    );
    if (!raw.destroyed) {
      send(stops.flush());
      chunk([{ index: 0, delta: {}, finish_reason: finishReason(result, stops) }], { ficoco: { stats: result.stats } });
      if (question.includeUsage) chunk([], { usage: usageOf(result.stats) });
      raw.end('data: [DONE]\n\n');
    }
    return { stats: result.stats };
  }

  app.addHook('onClose', async () => pool.dispose());
  return app;
}

/** Sends a stream's headers; from then on it is written by hand, and Fastify sends nothing more for it. */
function openStream(reply: FastifyReply): void {
  reply.hijack();
  reply.raw.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
}

/** An answer's generation: it stops when the client goes away, or when a stop string was seen. */
class Generation {
  private readonly source = new CancellationTokenSource();

  constructor(client: CancellationToken) {
    client.onCancellationRequested(() => this.source.cancel());
  }

  get token(): CancellationToken {
    return this.source.token;
  }

  stop(): void {
    this.source.cancel();
  }
}

function finishReason(result: AskResult, stops: StopStrings): 'stop' | 'length' {
  const reasons: Record<StopReason, 'stop' | 'length'> = {
    'stop-token': 'stop',
    'max-tokens': 'length',
    cancelled: 'stop',
  };
  return stops.stopped ? 'stop' : reasons[result.stopReason];
}

function usageOf(stats: AnswerStats) {
  const visual = stats.visualTokens.reduce((sum, v) => sum + v.original, 0);
  const kept = stats.visualTokens.reduce((sum, v) => sum + v.atDecoder, 0);
  return {
    prompt_tokens: stats.promptTokens,
    completion_tokens: stats.generatedTokens,
    total_tokens: stats.promptTokens + stats.generatedTokens,
    ficoco: {
      visual_tokens: visual,
      visual_tokens_kept: kept,
      prefill_flops: stats.flops.run.total,
      unreduced_prefill_flops: stats.flops.unreduced.total,
      vision_ms: stats.visionMs,
      prefill_ms: stats.prefillMs,
      ttft_ms: stats.ttftMs,
      decode_tokens_per_second: stats.decodeTokensPerSecond,
    },
  };
}

/** What Ajv's `verbose` adds to a schema error: the value refused and the schema holding the keyword. */
interface VerboseSchemaError extends FastifySchemaValidationError {
  data?: unknown;
  parentSchema?: { properties?: Record<string, unknown> };
}

/**
 * A schema error's field as OpenAI names it: /messages/0/content → messages[0].content; a missing or unknown one by
 * its name.
 */
function fieldOf(failure: FastifySchemaValidationError | undefined): string | null {
  if (!failure) return null;
  const { missingProperty, additionalProperty } = failure.params as Record<string, unknown>;
  const named = missingProperty ?? additionalProperty;
  const parts = [...failure.instancePath.split('/').slice(1), ...(typeof named === 'string' ? [named] : [])];
  return parts.map((part, i) => (/^\d+$/.test(part) ? `[${part}]` : i === 0 ? part : `.${part}`)).join('') || null;
}

/**
 * A schema error as one line naming the field and what it takes (`messages[0].content[0].type "input_audio" is not
 * supported; use "text" or "image_url".`). The schema has no anyOf, so Ajv's first error is the one that matters.
 */
function schemaRefusal(failure: VerboseSchemaError): string {
  const field = fieldOf(failure) ?? 'The request body';
  const either = (words: string[]) => new Intl.ListFormat('en', { type: 'disjunction' }).format(words);
  const choices = (values: unknown[]) => either(values.map((value) => JSON.stringify(value)));
  switch (failure.keyword) {
    case 'enum':
      return `${field} ${describeValue(failure.data)} is not supported; use ${choices(failure.params.allowedValues as unknown[])}.`;
    case 'additionalProperties':
      return `${field} is not supported; use ${choices(Object.keys(failure.parentSchema?.properties ?? {}))}.`;
    case 'required':
      return `${field} is required.`;
    case 'type':
      return `${field} is ${describeValue(failure.data)}; expected ${either([failure.params.type as string | string[]].flat())}.`;
    default:
      return `${field} ${failure.message ?? 'is not valid'}.`;
  }
}

function toOpenAiError(error: Error): OpenAiError {
  const fastify = error as FastifyError;
  if (fastify.validation)
    return {
      status: 400,
      message: schemaRefusal(fastify.validation[0]),
      type: 'invalid_request_error',
      code: null,
      param: fieldOf(fastify.validation[0]),
    };
  if (fastify.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return {
      status: 413,
      message: `The request is larger than this server takes. ${error.message}`,
      type: 'invalid_request_error',
      code: 'request_too_large',
    };
  if (typeof fastify.statusCode === 'number' && fastify.statusCode < 500)
    return { status: fastify.statusCode, message: error.message, type: 'invalid_request_error', code: null };
  if (error instanceof BadChatRequest)
    return { status: 400, message: error.message, type: 'invalid_request_error', code: null, param: error.param };
  if (error instanceof QueueFullError)
    return {
      status: 429,
      message: error.message,
      type: 'rate_limit_error',
      code: 'queue_full',
      headers: { 'retry-after': String(error.retryAfterSeconds) },
    };
  if (error instanceof LeftQueueError)
    return { status: 499, message: error.message, type: 'invalid_request_error', code: 'cancelled' };
  if (error instanceof FicocoError) return { ...ENGINE_ERRORS[error.kind], message: error.message };
  if (error instanceof EngineError) return { ...ENGINE_ERRORS[error.kind], message: error.message };
  return { status: 500, message: `The server failed unexpectedly: ${error.message}`, type: 'server_error', code: null };
}

/** What Node refuses before a route, by its error code. */
function clientError(error: Error, requestTimeoutMs: number): OpenAiError {
  const type = 'invalid_request_error';
  switch ((error as NodeJS.ErrnoException).code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status: 408,
        message: `The request did not arrive within ${requestTimeoutMs / 1000} s.`,
        type,
        code: 'request_timeout',
      };
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        message: `The request's headers are larger than the server reads (${maxHeaderSize / 1024} KiB).`,
        type,
        code: 'request_header_fields_too_large',
      };
    default:
      return {
        status: 400,
        message: `The request could not be read as HTTP (${error.message}).`,
        type,
        code: 'bad_request',
      };
  }
}

function errorBody(error: OpenAiError) {
  return { message: error.message, type: error.type, param: error.param ?? null, code: error.code };
}

function sendError(reply: FastifyReply, error: OpenAiError): FastifyReply {
  if (error.headers) void reply.headers(error.headers);
  return reply.code(error.status).send({ error: errorBody(error) });
}

/** The most of a refused body read and dropped before its 413 is sent, and for how long at most. */
const DRAIN_MOST_BYTES = 64 * 2 ** 20;
const DRAIN_MOST_MS = 10_000;

/** Resolves once `body` has ended, or after DRAIN_MOST_BYTES or DRAIN_MOST_MS; what it reads is dropped. */
function drained(body: IncomingMessage): Promise<void> {
  if (body.complete) return Promise.resolve();
  return new Promise((resolve) => {
    let bytes = 0;
    const stop = () => {
      clearTimeout(timer);
      body.off('data', count).off('end', stop).off('error', stop).off('close', stop);
      resolve();
    };
    const count = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > DRAIN_MOST_BYTES) stop();
    };
    const timer = setTimeout(stop, DRAIN_MOST_MS);
    body.on('data', count).on('end', stop).on('error', stop).on('close', stop);
    body.resume();
  });
}

/** Compares secrets in constant time (lengths may differ). */
function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
