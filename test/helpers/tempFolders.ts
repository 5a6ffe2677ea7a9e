import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after } from 'node:test';

/**
 * A maker of temporary folders, each removed once the tests around the call are done (node:test's `after`, so
 * call it in a describe() body or at the top of a test file).
 */
export function temporaryFolders(): (prefix: string) => string {
  const made: string[] = [];
  after(() => {
    for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
  });
  return (prefix) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    made.push(dir);
    return dir;
  };
}
