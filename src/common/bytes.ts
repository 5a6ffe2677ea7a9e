/** 5.6 GB, 412 MB, 4.4 MB: decimal units, one decimal below ten of a unit. */
export function formatBytes(bytes: number): string {
  const units = [
    ['GB', 1e9],
    ['MB', 1e6],
    ['kB', 1e3],
  ] as const;
  for (const [unit, size] of units)
    if (bytes >= size) return `${(bytes / size).toFixed(bytes >= 10 * size ? 0 : 1)} ${unit}`;
  return `${bytes} B`;
}
