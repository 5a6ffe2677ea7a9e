/**
 * Asking a Hub server: every @huggingface/hub call goes through hubOptions' fetch, which keeps the access token on
 * the endpoint's origin and bounds each answer in time and, but for a file's own bytes, in size. The server is not
 * trusted; its errors become messages that say what to do. The same clocks and bounds (watchRequest, fetchWatched,
 * watchedBody) ask the CUDA provider's NuGet feed (cudaProvider.ts).
 */
import { FicocoError } from '../common/errors';
import { privateTo } from '../common/loopback';
import type { ModelRequest } from './downloadPlan';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

/** A request is given up (and retried, as a dropped connection) when the server sends nothing for this long. */
export const IDLE_MS = 60_000;
/** Asking the server (a model's revision and listing, a file's probe) is given up when its answers take this long. */
export const ANSWER_MS = 120_000;
/** An answer that is not a file's bytes (a listing page, a model's info, a probe, an error) larger than this is not one. */
export const MAX_API_BYTES = 32 * 2 ** 20;

/** Refuses an endpoint that is not an http(s) URL before any request; `source` says where it came from. */
export function checkHubEndpoint(endpoint: string, source = 'The Hub endpoint'): void {
  const protocol = URL.canParse(endpoint) ? new URL(endpoint).protocol : undefined;
  if (protocol !== 'http:' && protocol !== 'https:')
    throw new FicocoError(
      `${source} ${JSON.stringify(endpoint)} is not an http(s) URL such as ${DEFAULT_HUB_ENDPOINT}.`,
      'input',
    );
}

/**
 * What every @huggingface/hub call of a request takes: the endpoint without a trailing slash; the token where it may
 * go; and a fetch that keeps the token on the endpoint's origin, whatever pagination links the server sends, and
 * bounds every answer but a file's own bytes (`forFile`: the calls fetch one file, whose probe is an API answer).
 */
export function hubOptions(
  request: ModelRequest,
  signal?: AbortSignal,
  forFile = false,
): { hubUrl: string; accessToken?: string; fetch: typeof fetch } {
  const hubUrl = request.endpoint.replace(/\/+$/, '');
  const accessToken = request.accessToken && privateTo(hubUrl) ? request.accessToken : undefined;
  const origin = new URL(hubUrl).origin;
  const answerMs = request.answerTimeoutMs ?? ANSWER_MS;
  const originBound: typeof fetch = async (input, init) => {
    // Each answer has a deadline besides the idle timeout: a server cannot trickle one out a byte at a time.
    const answerBy = Date.now() + answerMs;
    const url = new URL(input instanceof Request ? input.url : input);
    const headers = new Headers(init?.headers);
    if (accessToken && url.origin !== origin && headers.get('authorization') === `Bearer ${accessToken}`)
      headers.delete('authorization');
    // A file's bytes are as long as the file; its probe (one byte, asked first) is an API answer like the rest.
    const fileBytes = forFile && headers.get('range') !== 'bytes=0-0';
    const watch = watchRequest(url.host, request.idleTimeoutMs ?? IDLE_MS);
    const tooLong =
      `${url.host} took more than ${answerMs / 1000} s to answer ${url.pathname}; try again later, or another ` +
      'mirror (ficoco.hubEndpoint, --endpoint)';
    if (!fileBytes) watch.deadline(answerBy - Date.now(), tooLong);
    const response = await fetchWatched(input, { ...init, headers }, watch, [signal, init?.signal]);
    // An error's body is read for its message: in the time an answer has, not as long as a file's bytes.
    if (fileBytes && !response.ok) watch.deadline(answerMs, tooLong);
    // A file resumes where its request asked, whatever type the server gives its bytes (JSON files are files too).
    const ownRange = fileBytes && response.ok ? /^bytes=(\d+)-\d*$/.exec(headers.get('range') ?? '') : null;
    // Whatever its path, any answer but a file's bytes is bounded; an error's body too (it is read for its message).
    return watchedBody(response, watch, {
      resumeAt: Number(ownRange?.[1] ?? 0),
      maxBytes: fileBytes && response.ok ? Infinity : MAX_API_BYTES,
      what: `${url.host}${url.pathname}`,
    });
  };
  return { hubUrl, ...(accessToken ? { accessToken } : {}), fetch: originBound };
}

/** The clocks of one request (watchRequest). */
export interface RequestWatch {
  /** aborts after the idle time without a byte, or at the deadline */
  signal: AbortSignal;
  /** a byte came: the idle clock starts again */
  alive: () => void;
  /** gives the request up `ms` from now, saying `reason` */
  deadline: (ms: number, reason: string) => void;
  stop: () => void;
}

/**
 * The clocks of one request: its signal aborts after `idleMs` without a byte (`alive` restarts that clock) and at the
 * deadline, once one is set; `stop` disarms both.
 */
export function watchRequest(host: string, idleMs: number): RequestWatch {
  const controller = new AbortController();
  const giveUp = (reason: string) => controller.abort(new Error(reason));
  const idle = setTimeout(() => giveUp(`${host} sent nothing for ${idleMs / 1000} s`), idleMs).unref();
  let deadline: NodeJS.Timeout | undefined;
  return {
    signal: controller.signal,
    alive: () => void idle.refresh(),
    deadline: (ms: number, reason: string) => {
      clearTimeout(deadline);
      deadline = setTimeout(() => giveUp(reason), Math.max(0, ms)).unref();
    },
    stop: () => {
      clearTimeout(idle);
      clearTimeout(deadline);
    },
  };
}

/**
 * Sends a request that `watch`'s clocks or any of `signals` give up; its body is bounded only once passed to
 * watchedBody.
 */
export async function fetchWatched(
  input: string | URL | Request,
  init: RequestInit,
  watch: RequestWatch,
  signals: (AbortSignal | null | undefined)[],
): Promise<Response> {
  const aborted = AbortSignal.any([watch.signal, ...signals.filter((given): given is AbortSignal => !!given)]);
  aborted.addEventListener('abort', watch.stop, { once: true });
  const response = await fetch(input, { ...init, signal: aborted }).catch((error) => {
    watch.stop();
    throw error;
  });
  if (!response.body) {
    watch.stop();
    // No body (a 204, a 304) is no answer: a reader of its stream would wait for ever.
    const url = new URL(input instanceof Request ? input.url : input);
    throw new Error(`${url.host}${url.pathname} answered ${response.status} without a body`);
  }
  return response;
}

/**
 * A response whose body restarts the request's idle clock with every chunk and is cut off past `maxBytes` (decoded, so
 * a compressed bomb too). Asked to resume at `resumeAt`, a 206 must start there; a 200 (the server ignored the range)
 * has its first `resumeAt` bytes skipped, so a resumed file still gets exactly the bytes it lacks.
 */
export function watchedBody(
  response: Response,
  watch: RequestWatch,
  { resumeAt, maxBytes, what }: { resumeAt: number; maxBytes: number; what: string },
): Response {
  if (resumeAt > 0 && response.status === 206) {
    const start = Number(/^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '')?.[1]);
    if (start !== resumeAt) {
      watch.stop();
      void response.body?.cancel();
      throw new Error(`${what} resumed at byte ${start} when asked for byte ${resumeAt}`);
    }
  }
  let skip = resumeAt > 0 && response.status === 200 ? resumeAt : 0;
  let received = 0;
  const body = response.body!.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        watch.alive();
        received += chunk.length;
        if (received > maxBytes) {
          watch.stop();
          throw new Error(`${what} sent more than ${maxBytes} bytes`);
        }
        if (skip >= chunk.length) {
          skip -= chunk.length;
          return;
        }
        controller.enqueue(skip > 0 ? chunk.subarray(skip) : chunk);
        skip = 0;
      },
      flush: watch.stop,
    }),
  );
  const watched = new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  // The Hub library reads where a redirect led (Response.url), which a new Response does not carry.
  Object.defineProperty(watched, 'url', { value: response.url });
  return watched;
}

/** The Hub library's errors (HTTP status in `statusCode`) and network failures as one actionable message. */
export function asDownloadError(error: unknown, what: string): FicocoError {
  if (error instanceof FicocoError) return error;
  const status = (error as { statusCode?: unknown }).statusCode;
  const message = error instanceof Error ? error.message : String(error);
  if (status === 404)
    return new FicocoError(
      `${what}: not found (404). Check the repository name, the revision and the Hub endpoint.`,
      'download',
    );
  if (status === 401 || status === 403) {
    return new FicocoError(
      `${what}: access denied (${status}). The repository may be gated or private: accept its licence on ` +
        `the Hub and set an access token ` +
        '(FiCoCo: Set Hugging Face Token… in VS Code, $HF_TOKEN for the CLI; it is sent only over https).',
      'download',
    );
  }
  const cause = (error as { cause?: { message?: string } }).cause?.message;
  return new FicocoError(`${what}: ${message}${cause ? ` (${cause})` : ''}.`, 'download');
}
