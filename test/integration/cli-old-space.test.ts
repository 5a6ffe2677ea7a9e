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

/** A process's children, their children, and so on. */
function descendantsOf(pid: number): number[] {
  return childrenOf(pid).flatMap((child) => [child, ...descendantsOf(child)]);
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
 * many to go), returns the command lines of the processes under it that run `runs` (SCRIPT by default); then stops it.
 * Its output closes only once every process under it that shares the output has ended.
 */
async function descendantsRunning(
  script: string,
  args: string[],
  { env = process.env, runs = path.join(ROOT, script) }: { env?: NodeJS.ProcessEnv; runs?: string } = {},
) {
  const file = path.join(ROOT, script);
  const parent = spawn(process.execPath, ['--import', 'tsx', file, ...args], { cwd: ROOT, env });
  // A process that could not start, or ended before any output, fails the test instead of leaving it unfinished.
  const firstOutput = await new Promise<string>((resolve, reject) => {
    parent.stderr.once('data', (chunk: Buffer) => resolve(chunk.toString()));
    parent.once('error', reject);
    parent.once('exit', (code, signal) => reject(new Error(`${script} ended (${code ?? signal}) before any output`)));
  });
  const running = descendantsOf(parent.pid!)
    .map(commandLine)
    .filter((line) => line.includes(runs));
  parent.kill('SIGTERM');
  await once(parent, 'close');
  return { running, firstOutput };
}

test('bench/prefill.ts (npm run bench) measures the bundled CLI in a Node started with the old-space floor', async (t) => {
  if (process.platform !== 'linux') return t.skip('reads the processes from /proc');
  const bundledCli = path.join(ROOT, 'dist', 'cli.js');
  if (!fs.existsSync(bundledCli)) return t.skip('needs dist/cli.js: npm run build');
  const out = temporaryFolder('ficoco-old-space-bench-');
  const { running, firstOutput } = await descendantsRunning(
    'bench/prefill.ts',
    ['--arch', 'builtin-anyres', '--methods', 'all', '--runs', '1', '--decode', '0', '--out', out],
    // The random model goes to $TMPDIR/ficoco-bench: this test's folder, removed after it.
    { env: { ...process.env, TMPDIR: out }, runs: bundledCli },
  );
  const measuring = running.filter((line) => line.includes(ENGINE_OLD_SPACE_FLOOR));
  assert.equal(measuring.length, 1, `one process runs the benchmark with the floor; its first output: ${firstOutput}`);
  assert.ok(measuring[0].includes('bench'), measuring[0].join(' '));
});

test('bench/gpu-check.ts measures in a Node started with the old-space floor', async (t) => {
  if (process.platform !== 'linux') return t.skip('reads the processes from /proc');
  const out = temporaryFolder('ficoco-old-space-gpu-check-');
  const { running } = await descendantsRunning('bench/gpu-check.ts', [
    ...['--provider', 'cpu', '--model', 'test/fixtures/tiny-llava-llama', '--budgets', '8,4,2'],
    ...['--out', out],
  ]);
  assert.equal(running.length, 1, 'one child runs the check');
  assert.ok(running[0].includes(ENGINE_OLD_SPACE_FLOOR), running[0].join(' '));
});
