import * as fs from 'node:fs';
import * as os from 'node:os';

/**
 * Below this many FLOPs per prefill an op lasts microseconds and waking a second thread costs more than it saves:
 * the built-in model prefills in 8–13 ms on one thread and 15 ms on two.
 */
const SINGLE_THREAD_PREFILL_FLOPS = 20e9;

/**
 * Intra-op threads when the user sets none: one for a tiny model, else one per physical core. ORT's own default
 * counts cores from CPUID, which in a VM can see two vCPUs as one core's two threads and run on one of them
 * (1.75× slower on this project's 2-vCPU machines); undefined leaves ORT's default where the cores are unknown.
 */
export function defaultThreads(prefillFlops: number, cores: number | undefined): number | undefined {
  if (prefillFlops < SINGLE_THREAD_PREFILL_FLOPS) return 1;
  return cores;
}

/**
 * Physical cores as Linux lists them (distinct physical id and core id in /proc/cpuinfo), never more than the CPUs
 * this process may use; undefined elsewhere, or where the file names no cores (some ARM kernels).
 */
export function physicalCores(cpuinfo: string | undefined, usable: number): number | undefined {
  if (cpuinfo === undefined) return undefined;
  const cores = new Set<string>();
  for (const block of cpuinfo.split(/\n\s*\n/)) {
    const socket = /^physical id\s*:\s*(\d+)/m.exec(block)?.[1];
    const core = /^core id\s*:\s*(\d+)/m.exec(block)?.[1];
    if (socket !== undefined && core !== undefined) cores.add(`${socket}:${core}`);
  }
  return cores.size > 0 ? Math.min(cores.size, usable) : undefined;
}

/**
 * The cores each of `workers` engines busy at once may use: their share of `cores`, at least one. Each starting a thread
 * per core oversubscribes them: two OneVision-0.5B workers on two cores answered 0.18 questions a second so, 0.21 on
 * one thread each (bench/results/serve-load-onevision.md).
 */
export function coresPerWorker(cores: number, workers: number): number {
  return Math.max(1, Math.floor(cores / workers));
}

/** This machine's physical cores, as physicalCores counts them. */
export function thisMachineCores(): number | undefined {
  return physicalCores(readCpuinfo(), os.availableParallelism());
}

function readCpuinfo(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    return fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return undefined;
  }
}
