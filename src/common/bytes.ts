const UNITS = [
  ['GB', 1e9],
  ['MB', 1e6],
  ['kB', 1e3],
] as const;

/** 5.6 GB, 412 MB, 4.4 MB: decimal units, one decimal below ten of a unit; `extraDecimals` more where asked. */
export function formatBytes(bytes: number, extraDecimals = 0): string {
  for (const [unit, size] of UNITS)
    if (bytes >= size) return `${(bytes / size).toFixed((bytes >= 10 * size ? 0 : 1) + extraDecimals)} ${unit}`;
  return `${bytes} B`;
}

/** 0.45 GiB, 4.1 GiB: memory in binary units, as the engine's refusals and the server's log give it. */
export function formatGibibytes(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 2 : 1)} GiB`;
}

/**
 * Two sizes a message compares, as formatBytes gives them but with as many more decimals as it takes for them to read
 * apart: "needs 4.4 MB, has 4.4 MB free" says nothing.
 */
export function formatBytesApart(first: number, second: number): [string, string] {
  let extraDecimals = 0;
  // Nine more decimals tell two whole byte counts apart in any unit up to GB.
  while (
    first !== second &&
    extraDecimals < 9 &&
    formatBytes(first, extraDecimals) === formatBytes(second, extraDecimals)
  )
    extraDecimals++;
  return [formatBytes(first, extraDecimals), formatBytes(second, extraDecimals)];
}
