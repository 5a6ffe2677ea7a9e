/**
 * `--image` files are read as the file checked: one swapped for a pipe after its check is refused on the handle it is
 * read from, not waited on (a pipe without a writer held `ficoco ask` forever).
 */
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { readImageArg } from '../../src/cli/args';
import { MAX_IMAGE_BYTES } from '../../src/common/imageFile';
import { throwsFicoco } from '../helpers/assertions';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();
const IMAGE = path.join(__dirname, '..', 'fixtures', 'images', 'screenshot.png');

test('an image read whole, as checked', () => {
  const { bytes, name } = readImageArg(IMAGE);
  assert.equal(name, 'screenshot.png');
  assert.ok(bytes.equals(fs.readFileSync(IMAGE)));
});

test('an image swapped for a pipe between its check and its read is refused, not read or waited on', (t) => {
  const dir = temporaryFolder('ficoco-image-arg-');
  const file = path.join(dir, 'swapped.png');
  const pipe = path.join(dir, 'pipe');
  fs.copyFileSync(IMAGE, file);
  execFileSync('mkfifo', [pipe]);
  // A writer, so that a read that opens the pipe gets an image and ends instead of waiting for one.
  const writer = spawn(process.execPath, ['-e', `require('fs').writeFileSync(${JSON.stringify(pipe)}, 'an image')`]);
  t.after(() => writer.kill('SIGKILL'));
  // The swap lands right after the check's stat: the race, made certain.
  const stat = fs.statSync;
  t.mock.method(fs, 'statSync', (...args: Parameters<typeof fs.statSync>) => {
    const stats = stat(...args);
    fs.rmSync(file);
    fs.symlinkSync(pipe, file);
    t.mock.restoreAll();
    return stats;
  });
  throwsFicoco(() => readImageArg(file), 'image', /^--image .*swapped\.png is not a regular file\.$/);
});

test('an image that grows past the limit after its check is refused, reading no more than the limit', (t) => {
  const dir = temporaryFolder('ficoco-image-arg-');
  const file = path.join(dir, 'growing.png');
  fs.copyFileSync(IMAGE, file);
  const stat = fs.statSync;
  t.mock.method(fs, 'statSync', (...args: Parameters<typeof fs.statSync>) => {
    const stats = stat(...args);
    fs.truncateSync(file, 2 * MAX_IMAGE_BYTES);
    return stats;
  });
  const read = fs.readSync;
  let bytesRead = 0;
  t.mock.method(fs, 'readSync', (...args: Parameters<typeof fs.readSync>) => {
    const count = read(...args);
    bytesRead += count;
    return count;
  });
  throwsFicoco(() => readImageArg(file), 'image', /growing\.png is 64 MiB; FiCoCo takes image files up to 32 MiB\.$/);
  assert.ok(bytesRead <= MAX_IMAGE_BYTES + 1, `${bytesRead} bytes read`);
});

test('an image one byte over the limit is said to be over it', () => {
  const file = path.join(temporaryFolder('ficoco-image-arg-'), 'over.png');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, MAX_IMAGE_BYTES + 1);
  // Both figures rounded to the same unit read "34 MB … up to 34 MB".
  throwsFicoco(() => readImageArg(file), 'image', /over\.png is 32\.1 MiB; FiCoCo takes image files up to 32 MiB\.$/);
});
