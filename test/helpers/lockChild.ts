/**
 * Takes a download lock in a process of its own where closing the lock file fails, as a network disk's close may (a
 * local disk's never does, so no real file can show it): `node --import tsx lockChild.ts LOCK_FILE`, run where no file
 * may grow (ulimit -f 0) so that the write fails first, or as it is, so that only the close fails. Prints
 * {"taken":true} or {"error":…}.
 */
// The module object itself (not a namespace copy), so the lock's code meets the failing close.
import fs from 'node:fs';
import { acquireDownloadLock } from '../../src/hub/downloadLock';

const [lockFile] = process.argv.slice(2);
const closeFile = fs.closeSync;
fs.closeSync = (fd: number) => {
  closeFile(fd);
  throw Object.assign(new Error('EIO: i/o error, close'), { code: 'EIO', syscall: 'close' });
};
// The lock file is written and closed before acquire's first wait, so no other file meets the failing close.
const taking = acquireDownloadLock(lockFile, 'the test model', { wait: false });
fs.closeSync = closeFile;
taking.then(
  (lock) => {
    lock.release();
    process.stdout.write(`${JSON.stringify({ taken: true })}\n`);
  },
  (error: unknown) => process.stdout.write(`${JSON.stringify({ error: String(error) })}\n`),
);
