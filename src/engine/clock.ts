/**
 * Starts timing; the returned function reads the wall ms and the process's user + system CPU ms (every thread) since.
 */
export function startClock(): () => { ms: number; cpuMs: number } {
  const wallStart = performance.now();
  const cpuStart = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpuStart);
    return { ms: performance.now() - wallStart, cpuMs: (used.user + used.system) / 1000 };
  };
}
