/** Failures of the local disk, which no retry mends: said at once, with what to do. */
import { FicocoError } from '../common/errors';

/** `error` as what to do, when it is a failure of the local disk writing `file`; undefined when it is not one. */
export function diskError(error: unknown, file: string): FicocoError | undefined {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new FicocoError(
      `The disk is full while writing ${file}; free some space and download again: it resumes where it stopped.`,
      'download',
    );
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
    return new FicocoError(`${file} cannot be written (${code}); check the folder's permissions.`, 'download');
  // A FAT32 drive holds no file over 4 GiB, and a 7B model's shards are larger.
  if (code === 'EFBIG')
    return new FicocoError(
      `${file} cannot be written: it would be larger than this disk's file system (or a file-size limit) allows ` +
        `(EFBIG); download to another disk.`,
      'download',
    );
  return undefined;
}
