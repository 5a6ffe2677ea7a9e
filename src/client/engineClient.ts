/**
 * The extension's side of the engine process: forks the host on first use, speaks src/protocol/engine.ts
 * to it, and forks a fresh one after a crash. Deliberately free of 'vscode' so it runs under plain Node;
 * vscode.CancellationToken satisfies vscode-jsonrpc's CancellationToken structurally.
 */
import { ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  CancellationToken,
  IPCMessageReader,
  IPCMessageWriter,
  MessageConnection,
  createMessageConnection,
} from 'vscode-jsonrpc/node';
import {
  AskParams,
  AskProgressNotification,
  AskRequest,
  AskResult,
  EngineErrorKind,
  LoadParams,
  LoadProgressNotification,
  LoadProgressParams,
  LoadRequest,
  LoadResult,
  loadRequestKey,
  TextNotification,
  errorKindOf,
  parseAskProgressParams,
  parseLoadProgressParams,
  parseTextParams,
} from '../protocol/engine';
import { passesQuarter, quantizingProgress } from '../common/quantization';
import type { PrefillProgress } from '../common/prefillProgress';

export interface EngineClientOptions {
  /** the host's entry point: dist/host.js, or src/host/main.ts with execArgv ['--import', 'tsx'] */
  hostModule: string;
  execArgv?: string[];
  /** receives the host's stderr and the client's own notes, one line at a time */
  log?: (line: string) => void;
  /** variables added to the host's environment, read at each start (e.g. where ORT's CUDA runtime was installed) */
  environment?: () => NodeJS.ProcessEnv;
  /** a first load with a quantization, layer by layer (minutes for a 7B model) */
  onLoadProgress?: (progress: LoadProgressParams) => void;
}

/** Why an engine call failed: the host's error kind, or 'crashed' when the process itself died. */
export class EngineError extends Error {
  constructor(
    message: string,
    readonly kind: EngineErrorKind | 'crashed',
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

/** One forked host and what it has loaded. */
interface HostProcess {
  child: ChildProcess;
  connection: MessageConnection;
  /** performance.now() at fork */
  startedAt: number;
  /** rejects with a 'crashed' EngineError once the process exits without being asked to */
  exited: Promise<never>;
  /** set when the client ended the process on purpose */
  stopped: boolean;
  /** the load this process last answered (or is answering), by its parameters */
  load?: { key: string; result: Promise<LoadResult> };
  /** the listeners of the asks sent and not yet answered, by requestId, in the order they were sent */
  listeners: Map<string, AnswerListeners>;
  /**
   * The ask the process was on when it ended: the oldest one unanswered, as it takes them in order (reported on
   * or not); the questions behind it had not begun.
   */
  answeringAtExit?: string;
  /** the questions sent to it (or loading their model on it) and not yet answered */
  users: number;
  /** restartWhenIdle() was called: it ends once `users` is 0, and new questions wait for a fresh process */
  retiring: boolean;
}

export type AskOptions = Omit<AskParams, 'requestId'>;

/** An answer; `stats` are absent when the engine cannot say what it did (a remote server other than ficoco serve). */
export interface EngineAnswer {
  text: string;
  stopReason: AskResult['stopReason'];
  stats?: AskResult['stats'];
}

/** What an ask tells its caller as it goes. */
export interface AnswerListeners {
  /** the next piece of the answer */
  text(piece: string): void;
  /** how far the engine has read the images and the prompt, before the first piece (engines that say) */
  progress?(progress: PrefillProgress): void;
  /** the engine process ended with the question waiting behind another; a fresh one loads the model and asks it */
  reloading?(): void;
}

/** Where questions are answered: the local engine process (EngineClient) or a remote server (RemoteEngine). */
export interface AnswerEngine {
  /**
   * Asks a question about images with `model` (a local engine loads it first when needed); `listeners` hear its text
   * and progress. Cancelling `token` stops generation between tokens and resolves with the partial answer, or, before
   * the first token, rejects with kind 'cancelled'.
   */
  ask(
    model: LoadParams,
    question: AskOptions,
    listeners: AnswerListeners,
    token?: CancellationToken,
  ): Promise<EngineAnswer>;
  /** the local engine process, when there is one */
  readonly processId: number | undefined;
  /** ends what is in flight (a local engine: its process) */
  stop(): void;
  dispose(): void;
}

/**
 * The engine process's JavaScript heap: prompts, token lists and bookkeeping (tensors live outside it); a cap, not a
 * reservation.
 */
const HOST_HEAP_MB = 4096;

/**
 * V8's floor under the old generation's limit, for any process that runs the engine for long. Its heap holds about
 * 14 MB, and V8 sizes the old generation's limit from that: after a few hundred answers the room left fell below
 * the young generation's and every collection became a mark-compact, slowing the reduction steps about eightfold
 * (bench/gc-drift.ts); a floor of 64 MB keeps the room. V8 reads it only when a process starts.
 */
export const ENGINE_OLD_SPACE_FLOOR = '--initial-old-space-size=64';

/** The engine process's V8 flags. */
export const HOST_V8_FLAGS = [`--max-old-space-size=${HOST_HEAP_MB}`, ENGINE_OLD_SPACE_FLOOR];

/**
 * glibc's malloc asking Linux for transparent huge pages (2 MiB) for its large blocks, which Linux grants on request by
 * default. ONNX Runtime zeroes gigabytes of prepacked weights at load, and faulting them in 4 KiB at a time took much
 * of it: OneVision-0.5B F32 loads 1.7–1.9× sooner, for 0.4–1.0 GiB more at its peak (docs/benchmarks.md, Huge pages).
 * glibc reads it only when a process starts; elsewhere (macOS, Windows, musl) it means nothing.
 */
export const ENGINE_HUGE_PAGES = 'glibc.malloc.hugetlb=1';

/** Whether a process started with `env` lacks ENGINE_HUGE_PAGES: on Linux, where its tunables do not set huge pages. */
export function lacksEngineHugePages(env: NodeJS.ProcessEnv): boolean {
  const [name] = ENGINE_HUGE_PAGES.split('=');
  const setsHugePages = (env.GLIBC_TUNABLES ?? '').split(':').some((tunable) => tunable.startsWith(`${name}=`));
  return process.platform === 'linux' && !setsHugePages;
}

/** `env` with ENGINE_HUGE_PAGES added to its GLIBC_TUNABLES where it lacks them (a user's own setting wins). */
export function withEngineHugePages(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (!lacksEngineHugePages(env)) return env;
  const tunables = env.GLIBC_TUNABLES ? `${env.GLIBC_TUNABLES}:${ENGINE_HUGE_PAGES}` : ENGINE_HUGE_PAGES;
  return { ...env, GLIBC_TUNABLES: tunables };
}

export class EngineClient implements AnswerEngine {
  private host: HostProcess | undefined;
  private disposed = false;

  /** settles once the latest question's load and request are sent */
  private sending: Promise<void> = Promise.resolve();

  constructor(private readonly options: EngineClientOptions) {}

  /** The live host's process id; undefined until the first call and after the process ended. */
  get processId(): number | undefined {
    return this.host?.child.pid;
  }

  /** Loads a model folder in the host (a no-op when this host already loaded the same one). */
  load(params: LoadParams): Promise<LoadResult> {
    return this.loadOn(this.running(), params);
  }

  /**
   * Loads `model` if the host has not, then asks. A question still waiting behind another when the process ended (that
   * one's crash, or Stop ending it) is asked again, once, on a fresh process.
   */
  ask(
    model: LoadParams,
    question: AskOptions,
    listeners: AnswerListeners,
    token?: CancellationToken,
  ): Promise<AskResult> {
    return this.send(model, question, listeners, token, 1);
  }

  private async send(
    model: LoadParams,
    question: AskOptions,
    listeners: AnswerListeners,
    token: CancellationToken | undefined,
    retries: number,
  ): Promise<AskResult> {
    // A load and its question go out together: another question's load sent between them would have the host (which
    // takes requests in order) answer this one with the other's model.
    const earlier = this.sending;
    let sent!: () => void;
    this.sending = new Promise<void>((resolve) => (sent = resolve));
    const notCancelled = () => {
      if (token?.isCancellationRequested)
        throw new EngineError('The question was cancelled before it started.', 'cancelled');
    };
    let host: HostProcess | undefined;
    let requestId: string | undefined;
    try {
      await earlier;
      // A process to be restarted answers the questions it has; later ones wait for a fresh one.
      while (this.host?.retiring && !token?.isCancellationRequested) await this.ended(this.host, token);
      // Stopped while it waited: it does not load its model. The process may have ended meanwhile: the live one.
      notCancelled();
      host = this.running();
      host.users++;
      await this.loadOn(host, model);
      notCancelled();
      requestId = randomUUID();
      host.listeners.set(requestId, listeners);
      const answer = host.connection.sendRequest(AskRequest, { ...question, requestId }, token);
      sent();
      try {
        return await this.call(host, answer);
      } finally {
        host.listeners.delete(requestId);
      }
    } catch (error) {
      // Waiting behind another question when the process ended (its crash, or Stop ending it): not this one's fault.
      const waited = host?.answeringAtExit !== undefined && host.answeringAtExit !== requestId;
      if (!waited || retries === 0 || token?.isCancellationRequested || this.disposed) throw error;
      sent();
      listeners.reloading?.();
      return this.send(model, question, listeners, token, retries - 1);
    } finally {
      sent();
      if (host && --host.users === 0 && host.retiring && this.host === host) this.stop();
    }
  }

  /**
   * Ends the process once the questions it has are answered (at once when it has none); a question asked meanwhile
   * waits for a fresh process. For a change the running process cannot take in (a provider installed since it started),
   * without cutting off an answer in flight as stop() does.
   */
  restartWhenIdle(): void {
    const host = this.host;
    if (!host) return;
    if (host.users === 0) this.stop();
    else host.retiring = true;
  }

  /** Resolves once `host` has ended, or `token` is cancelled. */
  private ended(host: HostProcess, token: CancellationToken | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const subscription = token?.onCancellationRequested(() => resolve());
      void host.exited
        .catch(() => undefined)
        .finally(() => {
          subscription?.dispose();
          resolve();
        });
    });
  }

  private loadOn(host: HostProcess, params: LoadParams): Promise<LoadResult> {
    // A new reduction to warm up is sent as a load too: the host keeps the model and only warms the reduction.
    const key = loadRequestKey(params);
    if (host.load?.key !== key) {
      const requested = performance.now();
      const result = this.call(host, host.connection.sendRequest(LoadRequest, params));
      host.load = { key, result };
      result.then(
        () => {
          const now = performance.now();
          this.options.log?.(
            `model ${params.modelDir} loaded in ${(now - requested).toFixed(0)} ms; ` +
              `${(now - host.startedAt).toFixed(0)} ms since the engine process was forked`,
          );
        },
        () => undefined,
      );
      // A failed load is not remembered: the next call tries again.
      result.catch(() => {
        if (host.load?.key === key) host.load = undefined;
      });
    }
    return host.load!.result;
  }

  /** Ends the host process (requests in flight fail with kind 'cancelled'); the next call forks a new one. */
  stop(): void {
    const host = this.host;
    this.host = undefined;
    if (!host) return;
    host.stopped = true;
    host.child.kill();
  }

  dispose(): void {
    this.disposed = true;
    this.stop();
  }

  /** The live host, forked now if there is none (first use, or after a crash). */
  private running(): HostProcess {
    if (this.disposed) throw new EngineError('The FiCoCo engine client was disposed.', 'internal');
    if (!this.host) this.host = this.start();
    return this.host;
  }

  private start(): HostProcess {
    const log = this.options.log ?? (() => undefined);
    const child = fork(this.options.hostModule, [], {
      execArgv: [...(this.options.execArgv ?? []), ...HOST_V8_FLAGS],
      // Inside VS Code, process.execPath is Electron: this makes it behave as plain Node.
      env: withEngineHugePages({ ...process.env, ...this.options.environment?.(), ELECTRON_RUN_AS_NODE: '1' }),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    forwardLines(child.stdout, log);
    forwardLines(child.stderr, log);
    const connection = createMessageConnection(new IPCMessageReader(child), new IPCMessageWriter(child));
    const host: HostProcess = Object.assign(
      {
        child,
        connection,
        startedAt: performance.now(),
        stopped: false,
        listeners: new Map<string, AnswerListeners>(),
        users: 0,
        retiring: false,
      },
      {
        exited: this.exitOf(child, connection, () => {
          host.answeringAtExit = host.listeners.keys().next().value;
          return host.stopped;
        }),
      },
    );
    connection.onNotification(TextNotification, (params: unknown) => {
      const piece = parseTextParams(params);
      host.listeners.get(piece.requestId)?.text(piece.text);
    });
    connection.onNotification(AskProgressNotification, (params: unknown) => {
      const { requestId, ...progress } = parseAskProgressParams(params);
      host.listeners.get(requestId)?.progress?.(progress);
    });
    connection.onNotification(LoadProgressNotification, (params: unknown) => {
      const { quantization, done, total } = parseLoadProgressParams(params);
      if (passesQuarter(done, total)) log(quantizingProgress(quantization, done, total));
      this.options.onLoadProgress?.({ quantization, done, total });
    });
    connection.listen();
    log(`engine process ${child.pid} started`);
    return host;
  }

  /**
   * Rejects once `child` is gone: 'cancelled' after stop(), 'crashed' otherwise (`ended` says which, as it ends).
   * Forgets it as the live host.
   */
  private exitOf(child: ChildProcess, connection: MessageConnection, ended: () => boolean): Promise<never> {
    const log = this.options.log ?? (() => undefined);
    const exited = new Promise<never>((_, reject) => {
      child.once('exit', (code, signal) => {
        if (this.host?.child === child) this.host = undefined;
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        const asked = ended();
        // Ended as asked (shutdown, idle unload, Stop): "killed by SIGTERM" would read as a crash in the log.
        log(`engine process ${child.pid} ${asked ? 'stopped' : how}`);
        if (asked) reject(new EngineError('The FiCoCo engine was stopped.', 'cancelled'));
        else
          reject(
            new EngineError(
              `The FiCoCo engine process stopped unexpectedly (it ${how}). It restarts on the next question; the ` +
                `model loads again.`,
              'crashed',
            ),
          );
        // After the rejection: requests the dispose rejects too then lose the race to the crash, which says more.
        connection.dispose();
      });
      child.once('error', (error) => {
        if (this.host?.child === child) this.host = undefined;
        reject(new EngineError(`The FiCoCo engine process could not start: ${error.message}`, 'crashed'));
      });
    });
    exited.catch(() => undefined);
    return exited;
  }

  /** A request's answer, or the crash of its process, with the host's errors turned into EngineErrors. */
  private async call<T>(host: HostProcess, request: Promise<T>): Promise<T> {
    try {
      return await Promise.race([request, host.exited]);
    } catch (error) {
      if (error instanceof EngineError) throw error;
      // A request cut off by the process ending: report the crash, not the transport's error.
      if (!host.child.connected) await host.exited;
      const message = error instanceof Error ? error.message : String(error);
      throw new EngineError(message, errorKindOf(error) ?? 'internal');
    }
  }
}

function forwardLines(stream: NodeJS.ReadableStream | null, log: (line: string) => void): void {
  if (!stream) return;
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line) log(line);
  });
  stream.on('end', () => {
    if (pending) log(pending);
  });
}
