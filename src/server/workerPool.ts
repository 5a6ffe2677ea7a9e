/**
 * The engine processes behind `ficoco serve`: each answers one request at a time, requests beyond them wait in a
 * bounded queue, and a request whose client went away leaves the queue, or stops its answer at the next token.
 */
import * as fs from 'node:fs';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import type { EngineClient } from '../client/engineClient';
import { formatGibibytes } from '../common/bytes';
import { availableMemory } from '../common/memory';
import { type LoadParams, type LoadResult, loadKey } from '../protocol/engine';

/** Full queue: a 429 whose Retry-After says when a slot is likely free. */
export class QueueFullError extends Error {
  constructor(
    readonly waiting: number,
    readonly retryAfterSeconds: number,
  ) {
    super(`All engine workers are busy and ${waiting} requests are waiting; try again in ${retryAfterSeconds} s.`);
    this.name = 'QueueFullError';
  }
}

/** The client went away before its request reached a worker. */
export class LeftQueueError extends Error {
  constructor() {
    super('The request was cancelled while it waited for an engine worker.');
    this.name = 'LeftQueueError';
  }
}

export interface WorkerPoolOptions {
  /** engine processes wanted; fewer start when memory runs short */
  workers: number;
  /** requests that may wait for a worker; one more is refused with QueueFullError */
  queueLimit: number;
  /** the model each worker loads when `workers` of them run: they may share the machine's cores */
  model: (workers: number) => LoadParams;
  newClient: () => EngineClient;
  /** one line about starting workers, for the server's log */
  log: (line: string) => void;
  /** bytes of memory available now (availableMemory in src/common/memory.ts unless a test says otherwise) */
  freeMemory?: () => number;
}

interface Waiter {
  resolve: (client: EngineClient) => void;
  reject: (error: Error) => void;
}

/** Each worker keeps this much free memory beyond its resident set when it loads: room for a prefill's attention. */
const HEADROOM = 1.5;
/** Recent request durations the Retry-After estimate averages. */
const RECENT = 20;

export class WorkerPool {
  private readonly clients: EngineClient[] = [];
  private readonly idle: EngineClient[] = [];
  private readonly waiting: Waiter[] = [];
  private readonly recentSeconds: number[] = [];
  private loaded: LoadResult | undefined;
  private loadParams: LoadParams;
  /** requests admitted whose bodies are still arriving: each holds a worker's or a queue place already */
  private arriving = 0;

  constructor(private readonly options: WorkerPoolOptions) {
    this.loadParams = options.model(options.workers);
  }

  /** the model every worker loads; a worker that restarted after a crash loads it again on its next request */
  get model(): LoadParams {
    return this.loadParams;
  }

  /** The first load's result once every worker that fits has its model; undefined before. */
  get ready(): LoadResult | undefined {
    return this.loaded;
  }

  get workers(): number {
    return this.clients.length;
  }

  get busy(): number {
    return this.clients.length - this.idle.length;
  }

  get queueDepth(): number {
    return this.waiting.length;
  }

  /**
   * Starts workers one at a time, each loading the model: another starts only while the memory free afterwards is at
   * least HEADROOM times what the last one holds (its resident set), so N workers never push the machine into swap.
   * When fewer than wanted fit, those that started load the model again as that many (with their share of the cores).
   * A load that fails ends every engine process started, then rejects.
   */
  async start(): Promise<LoadResult> {
    const { workers, log } = this.options;
    const model = this.loadParams;
    const freeMemory = this.options.freeMemory ?? availableMemory;
    let first: LoadResult | undefined;
    for (let i = 0; i < workers; i++) {
      const client = this.options.newClient();
      let result: LoadResult;
      try {
        result = await client.load(model);
      } catch (error) {
        // A failed load leaves its engine process running, and it is not in `clients`: end it and those started.
        client.dispose();
        this.dispose();
        throw error;
      }
      first ??= result;
      this.clients.push(client);
      this.release(client);
      if (i === workers - 1) break;
      const resident = residentBytes(client.processId);
      const free = freeMemory();
      if (resident !== undefined && free < HEADROOM * resident) {
        log(
          `started ${i + 1} of ${workers} engine workers: each holds ${formatGibibytes(resident)} and ` +
            `${formatGibibytes(free)} is free, less than the ${formatGibibytes(HEADROOM * resident)} another one needs`,
        );
        break;
      }
    }
    const fitted = this.options.model(this.clients.length);
    if (loadKey(fitted) !== loadKey(model)) first = await this.reload(fitted);
    log(`${this.clients.length} engine worker(s) ready on ${first!.provider}`);
    this.loaded = first;
    return first!;
  }

  /** Loads `params` on every worker started, one at a time: each host unloads its engine before it loads again. */
  private async reload(params: LoadParams): Promise<LoadResult> {
    const { workers, log } = this.options;
    this.loadParams = params;
    const running = this.clients.length;
    log(`loading the model again on the ${running} engine worker(s) started, with the cores meant for ${workers}`);
    let result: LoadResult | undefined;
    try {
      for (const client of this.clients) result = await client.load(params);
    } catch (error) {
      this.dispose();
      throw error;
    }
    return result!;
  }

  /**
   * Runs `work` on a free worker, after waiting for one if needed (`onWait` is called as the wait begins). `signal`
   * aborts the wait, or cancels the answer in progress through the token `work` is given (the engine stops between
   * tokens and returns what it has).
   */
  async run<T>(
    signal: AbortSignal,
    work: (client: EngineClient, token: CancellationTokenSource['token']) => Promise<T>,
    onWait?: () => void,
  ): Promise<T> {
    const client = await this.acquire(signal, onWait);
    const cancellation = new CancellationTokenSource();
    const cancel = () => cancellation.cancel();
    signal.addEventListener('abort', cancel, { once: true });
    const started = performance.now();
    try {
      return await work(client, cancellation.token);
    } finally {
      signal.removeEventListener('abort', cancel);
      cancellation.dispose();
      this.recentSeconds.push((performance.now() - started) / 1000);
      if (this.recentSeconds.length > RECENT) this.recentSeconds.shift();
      this.release(client);
    }
  }

  /**
   * Takes a place for a request before its body is read (a body may be tens of megabytes, and hundreds of clients may
   * send at once): QueueFullError when the workers and the queue are taken by the requests running, waiting and still
   * arriving. The function returned gives the place back once the request runs or fails (calling it again does nothing).
   */
  admit(): () => void {
    if (this.busy + this.waiting.length + this.arriving >= this.clients.length + this.options.queueLimit)
      throw new QueueFullError(this.waiting.length + this.arriving, this.retryAfterSeconds());
    this.arriving++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.arriving--;
    };
  }

  dispose(): void {
    for (const waiter of this.waiting.splice(0)) waiter.reject(new LeftQueueError());
    for (const client of this.clients) client.dispose();
  }

  private acquire(signal: AbortSignal, onWait?: () => void): Promise<EngineClient> {
    if (signal.aborted) return Promise.reject(new LeftQueueError());
    const free = this.idle.pop();
    if (free) return Promise.resolve(free);
    if (this.waiting.length >= this.options.queueLimit)
      return Promise.reject(new QueueFullError(this.waiting.length, this.retryAfterSeconds()));
    return new Promise<EngineClient>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (client) => {
          signal.removeEventListener('abort', leave);
          resolve(client);
        },
        reject,
      };
      const leave = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(new LeftQueueError());
      };
      signal.addEventListener('abort', leave, { once: true });
      this.waiting.push(waiter);
      onWait?.();
    });
  }

  private release(client: EngineClient): void {
    const next = this.waiting.shift();
    if (next) next.resolve(client);
    else this.idle.push(client);
  }

  /** Seconds until the queue has likely moved by one place: the recent mean request time over the workers. */
  private retryAfterSeconds(): number {
    const mean = this.recentSeconds.reduce((sum, s) => sum + s, 0) / Math.max(1, this.recentSeconds.length);
    const ahead = this.waiting.length + this.arriving;
    return Math.max(1, Math.ceil((mean * (ahead + 1)) / Math.max(1, this.clients.length)));
  }
}

/** A process's resident set in bytes (Linux /proc); undefined where that cannot be read. */
function residentBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
