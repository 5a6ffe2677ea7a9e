import * as fs from 'node:fs';
import * as path from 'node:path';

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
 * A failure of the local disk on `file`, or a file or folder in its way, in one line that says what to do; undefined
 * when `error` is neither. `access`: whether `file` was being read or written (a read fails only for its permissions).
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
      return inTheWayMessage(error, file);
  }
}

/** `at`, a file or a link where a folder belongs, and what to do, in one line. */
export function notAFolderMessage(at: string, what: 'file' | 'link'): string {
  return `${at} is a ${what}, not a folder: move it away`;
}

/**
 * A file where a folder belongs, or a folder where a file belongs, named (Node's error names the path it was given,
 * which may lie below the file in the way); undefined when `error` is neither. `file`: where the error names no path.
 */
function inTheWayMessage(error: unknown, file: string): string | undefined {
  const failure = error as (NodeJS.ErrnoException & { dest?: string }) | undefined;
  const given = failure?.path ?? file;
  switch (failure?.code) {
    // mkdir found something that is not a folder, or a path ran into a file on its way.
    case 'EEXIST':
    case 'ENOTDIR':
      return notAFolderMessage(fileOnTheWay(given) ?? given, 'file');
    // A rename's folder in the way is its destination.
    case 'EISDIR':
      return `${failure.dest ?? given} is a folder, not a file: move it away`;
    default:
      return undefined;
  }
}

/** The first of `at` and the folders above it that exists and is not a folder; undefined when none is found. */
function fileOnTheWay(at: string): string | undefined {
  for (let candidate = at; ; candidate = path.dirname(candidate)) {
    try {
      return fs.statSync(candidate).isDirectory() ? undefined : candidate;
    } catch {
      // Not there (or below the file in the way): look further up.
    }
    if (path.dirname(candidate) === candidate) return undefined;
  }
}
