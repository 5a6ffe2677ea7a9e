/** Files written whole or not at all, so that a reader (or a run stopped part-way) never sees one half-written. */
import * as fs from 'node:fs';

/** Writes `file` through a temporary file beside it (`….tmp`), renamed over it; the temporary goes on failure. */
export function writeFileAtomically(file: string, data: string | Uint8Array): void {
  const temporary = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    fs.writeFileSync(temporary, data);
    fs.renameSync(temporary, file);
  } catch (error) {
    fs.rmSync(temporary, { force: true });
    throw error;
  }
}
