/** How much memory this machine has, in all and available now, as the engine plans loads and runs by. */
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';

/** The machine's memory, or a container's limit where that is lower. */
export function memoryInAll(): number {
  const limit = process.constrainedMemory?.() ?? 0;
  return limit > 0 ? Math.min(os.totalmem(), limit) : os.totalmem();
}

/**
 * Bytes a program could take now without swapping. On Linux, MemAvailable or what a container's limit leaves, the
 * lower (process.availableMemory); macOS's free memory counts only free pages, a fraction of what the system hands
 * out on demand, so there it is free plus inactive pages (as psutil reckons "available"), read from vm_stat.
 */
export function availableMemory(platform: NodeJS.Platform = process.platform, vmStat = readVmStat): number {
  if (platform !== 'darwin') return process.availableMemory?.() ?? os.freemem();
  const reckoned = freeAndInactive(vmStat());
  return reckoned ?? os.freemem();
}

/** Free plus inactive pages in vm_stat's output, in bytes; undefined when it says neither. */
export function freeAndInactive(vmStat: string): number | undefined {
  const pageSize = /page size of (\d+) bytes/.exec(vmStat)?.[1];
  const pages = (name: string) => new RegExp(`^Pages ${name}:\\s+(\\d+)\\.`, 'm').exec(vmStat)?.[1];
  const [free, inactive] = [pages('free'), pages('inactive')];
  if (pageSize === undefined || free === undefined || inactive === undefined) return undefined;
  return (Number(free) + Number(inactive)) * Number(pageSize);
}

function readVmStat(): string {
  try {
    return execFileSync('/usr/bin/vm_stat', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
  } catch {
    return '';
  }
}
