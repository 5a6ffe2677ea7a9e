/**
 * Quantization runs in child processes, a layer per job: on one core a 7B model's layers take minutes. Each child
 * reads its layer, encodes it and writes the tensors into the cache file at the offsets its header gives them.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { FICOCO_ERROR_KINDS, FicocoError, type FicocoErrorKind } from '../../common/errors';
import type { TensorLocation } from './safetensors';

// dist/quantize-worker.js beside the bundle that runs this, or quantize-worker.ts beside this file under `node --import
// tsx`.
const WORKER_FILE = path.join(__dirname, `quantize-worker${path.extname(__filename)}`);

/** Float32 weights being encoded at most (at least one layer): a 7B model's output layer alone is 0.5 GB. */
const IN_FLIGHT_BYTES = 2 ** 30;

/** More processes than this would mostly hold more layers in memory. */
const MOST_WORKERS = 8;

/** One layer: its weight [out, in], the forms to encode it in, and where each encoded tensor goes in `file`. */
export interface EncodeJob<Forms> {
  weight: TensorLocation;
  forms: Forms;
  file: string;
  /** tensor suffix → byte offset in `file` */
  offsets: Record<string, number>;
}

export type WorkerReply =
  | { done: true }
  | { error: { message: string; kind?: FicocoErrorKind } }
  | { writeFailed: { message: string; code?: string } };

/** Writing a layer into the cache file failed (a full disk, a file-size limit); `code` is the system's error code. */
export class CacheWriteError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'CacheWriteError';
  }
}

/** One process per core, up to MOST_WORKERS. */
export function defaultWorkerCount(): number {
  return Math.min(MOST_WORKERS, os.availableParallelism());
}

/**
 * Encodes `jobs` in up to `workers` child processes, calling `onDone` as each finishes; rejects with the first failure
 * (a FicocoError when a layer cannot be read, a CacheWriteError when it cannot be written) and ends every child either
 * way.
 */
export async function encodeLayers<Forms>(
  jobs: readonly EncodeJob<Forms>[],
  workers: number,
  onDone: (done: number, total: number) => void,
): Promise<void> {
  const bytesOf = (job: EncodeJob<Forms>) => job.weight.shape.reduce((product, dim) => product * dim, 4);
  const children: ChildProcess[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const idle: ChildProcess[] = [];
      let [dispatched, done, bytesInFlight] = [0, 0, 0];
      const dispatch = () => {
        while (dispatched < jobs.length) {
          const bytes = bytesOf(jobs[dispatched]);
          if (bytesInFlight > 0 && bytesInFlight + bytes > IN_FLIGHT_BYTES) return;
          const child = idle.pop() ?? (children.length < Math.max(1, workers) ? start() : undefined);
          if (!child) return;
          const job = jobs[dispatched++];
          bytesInFlight += bytes;
          child.once('message', (reply: WorkerReply) => {
            if ('error' in reply) {
              const { message, kind } = reply.error;
              reject(kind && FICOCO_ERROR_KINDS.includes(kind) ? new FicocoError(message, kind) : new Error(message));
              return;
            }
            if ('writeFailed' in reply)
              return reject(new CacheWriteError(reply.writeFailed.message, reply.writeFailed.code));
            bytesInFlight -= bytes;
            onDone(++done, jobs.length);
            if (done === jobs.length) return resolve();
            idle.push(child);
            dispatch();
          });
          child.send(job);
        }
      };
      const start = () => {
        const child = fork(WORKER_FILE, [], {
          // tsx's --import must reach the child when running from source; a debugger's port must not.
          execArgv: process.execArgv.filter((flag) => !flag.startsWith('--inspect')),
          stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        });
        child.on('error', reject);
        child.on('exit', (code, signal) =>
          reject(
            new Error(
              `A process quantizing the weights stopped (${signal ?? `exit code ${code}`}), perhaps out of memory; ` +
                'close other programs and load the model again, or turn weight quantization off.',
            ),
          ),
        );
        children.push(child);
        return child;
      };
      if (jobs.length === 0) return resolve();
      dispatch();
    });
  } finally {
    for (const child of children) {
      child.removeAllListeners('exit');
      child.kill();
    }
  }
}
