/** Failures of the local disk, which no retry mends, by what the user can do about them. */
export type DiskFailure = 'full' | 'not-writable' | 'too-large';

const FAILURES = new Map<string, DiskFailure>([
  ['ENOSPC', 'full'],
  ['EDQUOT', 'full'],
  ['EACCES', 'not-writable'],
  ['EPERM', 'not-writable'],
  ['EROFS', 'not-writable'],
  // A FAT32 drive holds no file over 4 GiB, and a 7B model's shards are larger; a file-size limit (ulimit -f) too.
  ['EFBIG', 'too-large'],
]);

/** The local disk's failure in `error`, with its code; undefined when `error` is not one. */
export function diskFailureOf(error: unknown): { failure: DiskFailure; code: string } | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const failure = code === undefined ? undefined : FAILURES.get(code);
  return failure === undefined || code === undefined ? undefined : { failure, code };
}

/**
 * A failure of the local disk on `file` in one line that says what to do; undefined when `error` is not one. `access`:
 * whether `file` was being read or written (a read fails only for its permissions).
 */
export function diskFailureMessage(error: unknown, file: string, access: 'read' | 'write'): string | undefined {
  const disk = diskFailureOf(error);
  switch (disk?.failure) {
    case 'full':
      return `the disk is full while writing ${file} (${disk.code}); free some space`;
    case 'not-writable':
      return `${file} cannot be ${access === 'read' ? 'read' : 'written'} (${disk.code}); check the folder's permissions`;
    case 'too-large':
      return (
        `${file} cannot be written: a file-size limit (ulimit -f) or the disk's file system allows no file this ` +
        'large (EFBIG); raise the limit'
      );
    case undefined:
      return undefined;
  }
}
