import type * as vscode from 'vscode';
import { formatBytes } from '../common/bytes';

/**
 * Feeds a notification's progress bar from byte counts. Chunks arrive by the thousand, so the bar (and
 * `onPercent`) move in tenths of a percent; the message says "2.1 GB of 14 GB", plus the rate when asked: of `fetched`
 * where given (a resumed download's bytes on disk before came at no time), else of `bytes`.
 */
export function byteProgress(
  progress: vscode.Progress<{ message?: string; increment?: number }>,
  options: { showRate?: boolean; onPercent?: (percent: number) => void } = {},
): (bytes: number, total: number, fetched?: number) => void {
  const started = performance.now();
  let shown = 0;
  return (bytes, total, fetched = bytes) => {
    const percent = Math.floor((1000 * bytes) / total) / 10;
    if (percent === shown) return;
    const rate = options.showRate
      ? ` · ${formatBytes(fetched / Math.max(0.001, (performance.now() - started) / 1000))}/s`
      : '';
    progress.report({ increment: percent - shown, message: `${formatBytes(bytes)} of ${formatBytes(total)}${rate}` });
    shown = percent;
    options.onPercent?.(percent);
  };
}
