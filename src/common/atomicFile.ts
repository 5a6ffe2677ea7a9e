/** Files written whole or not at all, so that a reader (or a run stopped part-way) never sees one half-written. */
import * as fs from 'node:fs';

/**
 * Writes `file` through a temporary file beside it (`….tmp`), renamed over it; the temporary goes on failure. Without
 * holding the thread: on the extension host a chat's screenshots would stall every extension while written.
 */
export async function writeFileAtomically(file: string, data: string | Uint8Array): Promise<void> {
  const temporary = temporaryBeside(file);
  try {
    await fs.promises.writeFile(temporary, data);
    await fs.promises.rename(temporary, file);
  } catch (error) {
    removeFailedWrite(temporary);
    throw error;
  }
}

/** A name beside `file` that no other process or write of this one uses. */
function temporaryBeside(file: string): string {
  return `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
}

/**
 * Removes what a failed write left at `file`, closing `descriptor` first where the write had it open, as far as it
 * can. Where that fails too (a network disk's close, or on Windows a file another process still has open), the caller
 * reports the write's own error: the cleanup's would hide the one that matters.
 */
export function removeFailedWrite(file: string, descriptor?: number): void {
  try {
    if (descriptor !== undefined) fs.closeSync(descriptor);
  } catch {
    // The file is removed all the same; the caller's error says what went wrong.
  }
  try {
    fs.rmSync(file, { force: true });
  } catch {
    // Left in place; the caller's error says what went wrong.
  }
}
