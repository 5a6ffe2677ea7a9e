import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { writeFileAtomically } from '../../src/common/atomicFile';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();

test('writeFileAtomically replaces a file whole and leaves no temporary file', async () => {
  const folder = temporaryFolder('ficoco-atomic-');
  const file = path.join(folder, 'report.md');
  fs.writeFileSync(file, 'old');
  await writeFileAtomically(file, 'new');
  assert.equal(fs.readFileSync(file, 'utf8'), 'new');
  assert.deepEqual(fs.readdirSync(folder), ['report.md']);
});

test("a write that fails, and whose temporary file then cannot be removed, reports the write's error", async () => {
  // Under a regular file the temporary file can be neither written (open) nor looked up for removal (lstat).
  const notAFolder = path.join(temporaryFolder('ficoco-atomic-'), 'a-file');
  fs.writeFileSync(notAFolder, '');
  await assert.rejects(
    writeFileAtomically(path.join(notAFolder, 'report.md'), 'new'),
    (error: NodeJS.ErrnoException) => error.syscall === 'open',
  );
});
