/**
 * One download of a model at a time across processes: two writers appending to one `.incomplete` file would
 * interleave bytes. The lock is src/common/processLock.ts's, in the download's words.
 */
import { FicocoError } from '../common/errors';
import { type LockOptions, ProcessLock } from '../common/processLock';
import { diskError } from './diskError';

/** Takes the download's lock in `file` for `what` (the model, named in the messages), taking over a stale one. */
export function acquireDownloadLock(file: string, what: string, options: LockOptions): Promise<ProcessLock> {
  return ProcessLock.acquire(
    file,
    {
      busy: (holder) =>
        new FicocoError(
          `${what} is already downloading in another window or process (${holder}); it continues there, and the ` +
            `model is ready here once it ends.`,
          'download',
        ),
      takenOver: () =>
        new FicocoError(
          `Another process took over the download of ${file.replace(/\.lock$/, '')}; this one stopped. ` +
            `Run it again once that one ends.`,
          'download',
        ),
      waitStopped: () => new FicocoError(`Stopped waiting for the other download of ${what}.`, 'cancelled'),
      diskError,
    },
    options,
  );
}
