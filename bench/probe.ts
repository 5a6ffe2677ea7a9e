/** What every benchmark feeds the engine and reads back from the process. */
import * as fs from 'node:fs';

/** Pixel values [3, side, side] that vary smoothly (content does not change the cost; shapes do). */
export function syntheticPixels(side: number): Float32Array {
  return Float32Array.from({ length: 3 * side * side }, (_, i) => Math.sin(i * 0.001));
}

/** The process's peak resident memory so far (Linux VmHWM), in MiB. */
export function peakResidentMiB(): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024;
}
