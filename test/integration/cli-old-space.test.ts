import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ENGINE_OLD_SPACE_FLOOR } from '../../src/client/engineClient';
import { temporaryFolders } from '../helpers/tempFolders';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'src', 'cli', 'main.ts');
const MODEL = path.join(ROOT, 'test', 'fixtures', 'tiny-llava-llama');
const EVAL_SET = path.join(ROOT, 'bench', 'eval-set', 'data.jsonl');

const temporaryFolder = temporaryFolders();

/** A process's command line, from Linux's /proc. */
function commandLine(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
}

/** A process's children, from Linux's /proc (its main thread's). */
function childrenOf(pid: number): number[] {
  return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
}

test("ficoco eval answers in a Node started with the engine's old-space floor, stopped with the ficoco process", async (t) => {
  if (process.platform !== 'linux') return t.skip('reads the processes from /proc');
  const ficoco = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      CLI,
      'eval',
      '--model',
      MODEL,
      '--data',
      EVAL_SET,
      '--limit',
      '5',
      '--methods',
      'all',
      '--budgets',
      '12,4',
      '--out',
      temporaryFolder('ficoco-old-space-'),
    ],
    { cwd: ROOT },
  );
  let progress = '';
  ficoco.stderr.on('data', (chunk: Buffer) => (progress += chunk.toString()));
  // The first setting's score, on stderr: the evaluation is under way, with 30 settings to go.
  await once(ficoco.stderr, 'data');
  const evaluating = childrenOf(ficoco.pid!).filter((pid) => commandLine(pid).includes('eval'));
  assert.equal(evaluating.length, 1, `one child runs the evaluation: ${childrenOf(ficoco.pid!).map(commandLine)}`);
  assert.ok(commandLine(evaluating[0]).includes(ENGINE_OLD_SPACE_FLOOR), commandLine(evaluating[0]).join(' '));
  // A signal to the ficoco process alone, as a caller's timeout sends: its output closes once the child has ended.
  ficoco.kill('SIGTERM');
  await once(ficoco, 'close');
  assert.equal(ficoco.signalCode, 'SIGTERM');
  assert.doesNotMatch(progress, /\(31 of 31\)/);
});

/**
 * Starts `node --import tsx SCRIPT ARGS` and, once its first output is on stderr (its measurements under way, with
 * many to go), returns the command lines of the children that run SCRIPT; then stops it.
 */
async function childrenRunning(script: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const file = path.join(ROOT, script);
  const parent = spawn(process.execPath, ['--import', 'tsx', file, ...args], { cwd: ROOT, env });
  // A process that could not start, or ended before any output, fails the test instead of leaving it unfinished.
  await new Promise((resolve, reject) => {
    parent.stderr.once('data', resolve);
    parent.once('error', reject);
    parent.once('exit', (code, signal) => reject(new Error(`${script} ended (${code ?? signal}) before any output`)));
  });
  const running = childrenOf(parent.pid!)
    .map(commandLine)
    .filter((line) => line.includes(file));
  parent.kill('SIGTERM');
  await once(parent, 'close');
  return running;
}

test('bench/prefill.ts (npm run bench) measures in a Node started with the old-space floor', async (t) => {
  if (process.platform !== 'linux') return t.skip('reads the processes from /proc');
  const out = temporaryFolder('ficoco-old-space-bench-');
  const running = await childrenRunning(
    'bench/prefill.ts',
    ['--arch', 'builtin-anyres', '--methods', 'all', '--runs', '1', '--decode', '0', '--out', out],
    // The random model goes to $TMPDIR/ficoco-bench: this test's folder, removed after it.
    { ...process.env, TMPDIR: out },
  );
  assert.equal(running.length, 1, 'one child runs the benchmark');
  assert.ok(running[0].includes(ENGINE_OLD_SPACE_FLOOR), running[0].join(' '));
});

test('bench/gpu-check.ts measures in a Node started with the old-space floor', async (t) => {
  if (process.platform !== 'linux') return t.skip('reads the processes from /proc');
  const out = temporaryFolder('ficoco-old-space-gpu-check-');
  const running = await childrenRunning('bench/gpu-check.ts', [
    ...['--provider', 'cpu', '--model', 'test/fixtures/tiny-llava-llama', '--budgets', '8,4,2'],
    ...['--out', out],
  ]);
  assert.equal(running.length, 1, 'one child runs the check');
  assert.ok(running[0].includes(ENGINE_OLD_SPACE_FLOOR), running[0].join(' '));
});
