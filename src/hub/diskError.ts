/** Failures of the local disk while downloading: said at once, with what to do. */
import { diskFailureOf } from '../common/diskFailure';
import { FicocoError } from '../common/errors';

/** `error` as what to do, when it is a failure of the local disk writing `file`; undefined when it is not one. */
export function diskError(error: unknown, file: string): FicocoError | undefined {
  const disk = diskFailureOf(error);
  switch (disk?.failure) {
    case 'full':
      return new FicocoError(
        `The disk is full while writing ${file}; free some space and download again: it resumes where it stopped.`,
        'download',
      );
    case 'not-writable':
      return new FicocoError(`${file} cannot be written (${disk.code}); check the folder's permissions.`, 'download');
    case 'too-large':
      return new FicocoError(
        `${file} cannot be written: it would be larger than this disk's file system (or a file-size limit) allows ` +
          `(EFBIG); download to another disk.`,
        'download',
      );
    case undefined:
      return undefined;
  }
}
