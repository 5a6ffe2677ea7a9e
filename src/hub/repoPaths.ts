/**
 * What a Hub server says becomes file and folder names here, so it is checked first: a listed path must be a
 * plain relative path inside the repository, a commit must be 40 hex digits, and every path written stays under
 * the folder it belongs to. A server (or a man in the middle of an http:// mirror) that says otherwise is refused.
 */
import * as path from 'node:path';
import { FicocoError, shortJson } from '../common/errors';

/** What a file is called until its bytes are complete and verified. */
export const INCOMPLETE_SUFFIX = '.incomplete';
/** Longest name ext4 and APFS hold, in UTF-8 bytes (NTFS counts 255 UTF-16 units). */
const MAX_NAME_BYTES = 255;
/** A listed path longer or deeper than this is no model's (and would cost planning time quadratic in its length). */
const MAX_PATH_BYTES = 1024;
const MAX_PATH_DEPTH = 32;

/** Windows gives these names (with any extension) to devices: CON, PRN, AUX, NUL, COM1–9, LPT1–9. */
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i;
/** Characters Windows refuses in a file name, besides the separators and control characters. */
const WINDOWS_FORBIDDEN = /[<>:"|?*]/;

/**
 * Why a listed path cannot be a model repository's (git could not hold it, or no model has one so long or deep):
 * undefined when it can.
 */
function notARepositoryPath(file: string): string | undefined {
  if (file === '') return 'it is empty';
  if (file.includes('\0')) return 'it contains a NUL character';
  if (file.includes('\\')) return 'it contains a backslash';
  if (file.startsWith('/') || /^[a-z]:/i.test(file)) return 'it is absolute';
  const segments = file.split('/');
  if (segments.some((segment) => segment === '')) return 'it has an empty segment';
  if (segments.some((segment) => segment === '.' || segment === '..')) return 'it has a . or .. segment';
  if (Buffer.byteLength(file) > MAX_PATH_BYTES) return `it is longer than ${MAX_PATH_BYTES} bytes`;
  if (segments.length - 1 > MAX_PATH_DEPTH) return `it is more than ${MAX_PATH_DEPTH} folders deep`;
  if (segments.some((segment) => Buffer.byteLength(segment) > MAX_NAME_BYTES))
    return `it has a name longer than ${MAX_NAME_BYTES} bytes, more than ext4 or APFS holds`;
  return undefined;
}

/**
 * Why a path could not be written on every platform FiCoCo runs on (Windows is the strictest): undefined when it can.
 */
function notPortable(file: string): string | undefined {
  for (const segment of file.split('/')) {
    if (WINDOWS_FORBIDDEN.test(segment) || [...segment].some((char) => char.charCodeAt(0) < 0x20))
      return `"${segment}" contains a character Windows forbids in names`;
    if (WINDOWS_DEVICE.test(segment)) return `"${segment}" is a Windows device name`;
    if (/[. ]$/.test(segment)) return `"${segment}" ends in a dot or a space, which Windows drops`;
  }
  if (Buffer.byteLength(path.posix.basename(file) + INCOMPLETE_SUFFIX) > MAX_NAME_BYTES)
    return `its name is too long to download: with ${INCOMPLETE_SUFFIX} after it, it is longer than ${MAX_NAME_BYTES} bytes`;
  return undefined;
}

/** Every path a server lists must be one a model's repository could hold; `where` names the server and repository. */
export function checkListedPath(file: string, where: string): void {
  const problem = notARepositoryPath(file);
  if (problem) throw hostile(where, `lists the file ${shortJson(file)}, and ${problem}`);
}

/** A file about to be downloaded must also be writable on every platform. */
export function checkDownloadPath(file: string, where: string): void {
  checkListedPath(file, where);
  const problem = notPortable(file);
  if (problem) throw hostile(where, `lists the file ${shortJson(file)}, and ${problem}`);
}

/** A full git commit id: 40 lowercase hex digits. */
export function isCommit(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{40}$/.test(value);
}

/** The commit a revision resolved to; it becomes a folder name. */
export function checkCommit(commit: unknown, where: string): string {
  if (!isCommit(commit)) throw hostile(where, `answered the commit ${JSON.stringify(commit)}, not 40 hex digits`);
  return commit;
}

/** `folder` joined with a checked repository path, asserted to stay inside `folder`. */
export function pathInside(folder: string, file: string): string {
  const base = path.resolve(folder);
  const target = path.resolve(base, ...file.split('/'));
  const relative = path.relative(base, target);
  if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) {
    throw new FicocoError(`${file} would be written outside ${base}; nothing was written.`, 'download');
  }
  return target;
}

function hostile(where: string, what: string): FicocoError {
  return new FicocoError(
    `${where}: the server ${what}; FiCoCo refuses to download from it (nothing was written).`,
    'download',
  );
}
