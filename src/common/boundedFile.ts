/** A file read as data that may be hostile: a pipe, a device, or far larger than it should be. */
import * as fs from 'node:fs';

/** Bytes read at a time. */
const READ_CHUNK_BYTES = 2 ** 20;

/** Why readRegularFile read nothing: not a regular file, or more than the bound (`size`: what it held, at least). */
export class UnreadableFileError extends Error {
  constructor(
    readonly reason: 'not-regular' | 'too-large',
    readonly size = 0,
  ) {
    super(reason === 'not-regular' ? 'not a regular file' : `more than the bound (${size} bytes)`);
    this.name = 'UnreadableFileError';
  }
}

/**
 * A regular file's bytes, at most `most` of them (a link is followed). It is opened without blocking (a named pipe with
 * no writer is refused, not waited on), checked on the handle it is read from (a file swapped after a check by name is
 * not read), and never read past `most`, whatever size it claims or grows to meanwhile. Throws UnreadableFileError.
 */
export function readRegularFile(file: string, most: number): Buffer {
  const { O_RDONLY, O_NONBLOCK = 0 } = fs.constants;
  const handle = fs.openSync(file, O_RDONLY | O_NONBLOCK);
  try {
    const stats = fs.fstatSync(handle);
    if (!stats.isFile()) throw new UnreadableFileError('not-regular');
    const chunks: Buffer[] = [];
    let length = 0;
    // In chunks to the end: a file may hold more than its size said when it was checked.
    for (;;) {
      const chunk = Buffer.alloc(Math.min(READ_CHUNK_BYTES, most + 1 - length));
      const read = fs.readSync(handle, chunk, 0, chunk.length, null);
      if (read === 0) break;
      chunks.push(chunk.subarray(0, read));
      length += read;
      if (length > most) throw new UnreadableFileError('too-large', Math.max(stats.size, length));
    }
    return Buffer.concat(chunks, length);
  } finally {
    fs.closeSync(handle);
  }
}

/**
 * A JSON file's object, read as readRegularFile reads it; undefined when it cannot be read, holds more than `most`
 * bytes, does not parse, or is not an object.
 */
export function readJsonObject(file: string, most: number): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(readRegularFile(file, most).toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
