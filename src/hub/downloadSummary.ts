import { formatBytes } from '../common/bytes';
import type { DownloadProgress } from './download';
import type { LockOwner } from '../common/processLock';

/**
 * The closing line of one downloadModel call, for the CLI and the extension alike: what this call fetched and how
 * fast, or, when it reported no progress at all, that another process completed the model meanwhile.
 */
export class DownloadSummary {
  /** the process holding the download's lock, as a message names it */
  otherProcess = 'another process';
  /** Set by the first progress report, once this call downloads: a wait for another process is not in the rate. */
  private started: number | undefined;
  private fetchedBytes = 0;
  private onDiskBeforeBytes = 0;

  /** For DownloadOptions.onWait. */
  noteWait(owner: LockOwner | undefined): void {
    if (owner) this.otherProcess = `process ${owner.pid}`;
  }

  /** For DownloadOptions.onProgress. */
  noteProgress({ bytesFetched, bytesOnDiskBefore }: DownloadProgress, now = performance.now()): void {
    this.started ??= now;
    this.fetchedBytes = bytesFetched;
    this.onDiskBeforeBytes = bytesOnDiskBefore;
  }

  /** True when this call downloaded nothing: another process completed the model (downloadModel's onProgress says so). */
  get completedElsewhere(): boolean {
    return this.started === undefined;
  }

  /** "4.4 MB in 2.5 s (1.8 MB/s); 1.2 MB were on disk already", or "downloaded and verified by process 1234 meanwhile". */
  describe(now = performance.now()): string {
    if (this.started === undefined) return `downloaded and verified by ${this.otherProcess} meanwhile`;
    const seconds = (now - this.started) / 1000;
    // The rate is of what came over the network: a resumed download had the rest on disk.
    return (
      `${formatBytes(this.fetchedBytes)} in ${seconds.toFixed(1)} s (${formatBytes(this.fetchedBytes / seconds)}/s)` +
      `${this.onDiskBeforeBytes > 0 ? `; ${formatBytes(this.onDiskBeforeBytes)} were on disk already` : ''}`
    );
  }
}
