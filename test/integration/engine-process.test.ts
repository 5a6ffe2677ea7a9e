import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ENGINE_HUGE_PAGES, ENGINE_OLD_SPACE_FLOOR, EngineClient } from '../../src/client/engineClient';
import { writeEndlessModel } from '../helpers/endlessModel';
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

/** A process's GLIBC_TUNABLES, from Linux's /proc; undefined when it has none. */
function tunablesOf(pid: number): string | undefined {
  const variables = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return variables.find((variable) => variable.startsWith('GLIBC_TUNABLES='))?.slice('GLIBC_TUNABLES='.length);
}

/** This process's environment without GLIBC_TUNABLES: what a user who never set it runs ficoco in. */
function environmentWithoutTunables(): NodeJS.ProcessEnv {
  const { GLIBC_TUNABLES: _tunables, ...rest } = process.env;
  return rest;
}

/** A process's children, from Linux's /proc (its main thread's). */
function childrenOf(pid: number): number[] {
  return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
}

/** A process's children, their children, and so on. */
function descendantsOf(pid: number): number[] {
  return childrenOf(pid).flatMap((child) => [child, ...descendantsOf(child)]);
}

test("ficoco eval answers in a Node started with the engine's old-space floor and huge pages, stopped with ficoco", async (t) => {
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
    { cwd: ROOT, env: environmentWithoutTunables() },
  );
  let progress = '';
  ficoco.stderr.on('data', (chunk: Buffer) => (progress += chunk.toString()));
  // The first setting's score, on stderr: the evaluation is under way, with 30 settings to go.
  await once(ficoco.stderr, 'data');
  const evaluating = childrenOf(ficoco.pid!).filter((pid) => commandLine(pid).includes('eval'));
  assert.equal(evaluating.length, 1, `one child runs the evaluation: ${childrenOf(ficoco.pid!).map(commandLine)}`);
  assert.ok(commandLine(evaluating[0]).includes(ENGINE_OLD_SPACE_FLOOR), commandLine(evaluating[0]).join(' '));
  assert.equal(tunablesOf(evaluating[0]), ENGINE_HUGE_PAGES);
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

/**
 * Starts `ficoco ask` on `modelDir` and, once the answer streams (the endless model answers until stopped), returns the
 * processes under it that answer, with their GLIBC_TUNABLES; then stops it.
 */
async function askersOf(modelDir: string, env: NodeJS.ProcessEnv) {
  const image = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png');
  const args = [
    'ask',
    '--model',
    modelDir,
    '--image',
    image,
    '--max-new-tokens',
    '4000',
    'what colour is the circle ?',
  ];
  const ficoco = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, env });
  let errors = '';
  ficoco.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  await Promise.race([
    once(ficoco.stdout, 'data'),
    once(ficoco, 'exit').then(() => assert.fail(`ficoco ask ended before answering:\n${errors}`)),
  ]);
  const askers = descendantsOf(ficoco.pid!).filter((pid) => commandLine(pid).includes('ask'));
  const found = askers.map((pid) => ({ pid, tunables: tunablesOf(pid) }));
  ficoco.kill('SIGTERM');
  await once(ficoco, 'close');
  return found;
}

test('ficoco ask on a large model answers in a Node started with huge pages; on a small one, in its own', async (t) => {
  if (process.platform !== 'linux') return t.skip('reads the processes from /proc');
  const modelDir = writeEndlessModel();
  try {
    const env = environmentWithoutTunables();
    assert.deepEqual(await askersOf(modelDir, env), [], 'a small model: no second process');
    // A weights file of 300 MB as the folder lists it (sparse: it takes no disk), beside the model's own.
    const padding = path.join(modelDir, 'padding.bin');
    fs.writeFileSync(padding, '');
    fs.truncateSync(padding, 300e6);
    const askers = await askersOf(modelDir, env);
    assert.equal(askers.length, 1, JSON.stringify(askers));
    assert.equal(askers[0].tunables, ENGINE_HUGE_PAGES);
    // A user's own setting wins (the second process is for the old-space floor then).
    const own = await askersOf(modelDir, { ...env, GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' });
    assert.deepEqual(
      own.map((asker) => asker.tunables),
      ['glibc.malloc.hugetlb=0'],
    );
  } finally {
    fs.rmSync(modelDir, { recursive: true, force: true });
  }
});

/** Linux's transparent huge page mode ("always", "madvise" or "never"); undefined where the kernel has none. */
function hugePageMode(): string | undefined {
  const file = '/sys/kernel/mm/transparent_hugepage/enabled';
  return fs.existsSync(file) ? /\[(\w+)\]/.exec(fs.readFileSync(file, 'utf8'))?.[1] : undefined;
}

/** kB of huge pages the engine process holds once it has loaded the built-in model, started with `tunables`. */
async function engineHugePagesKb(tunables: string | undefined): Promise<number> {
  const saved = process.env.GLIBC_TUNABLES;
  if (tunables === undefined) delete process.env.GLIBC_TUNABLES;
  else process.env.GLIBC_TUNABLES = tunables;
  const host = path.join(ROOT, 'src', 'host', 'main.ts');
  const client = new EngineClient({ hostModule: host, execArgv: ['--import', 'tsx'] });
  try {
    await client.load({ modelDir: path.join(ROOT, 'models', 'tiny-llava-screens'), provider: 'cpu' });
    const memory = fs.readFileSync(`/proc/${client.processId}/smaps_rollup`, 'utf8');
    return Number(/^AnonHugePages:\s+(\d+) kB$/m.exec(memory)?.[1]);
  } finally {
    client.dispose();
    if (saved === undefined) delete process.env.GLIBC_TUNABLES;
    else process.env.GLIBC_TUNABLES = saved;
  }
}

test('the engine process holds huge pages where Linux gives them on request, unless the user says not to', async (t) => {
  if (process.platform !== 'linux' || hugePageMode() !== 'madvise')
    return t.skip(`needs Linux with transparent huge pages on request ("madvise"); here: ${hugePageMode()}`);
  assert.ok((await engineHugePagesKb(undefined)) > 0, 'huge pages asked for by the engine');
  assert.ok((await engineHugePagesKb('glibc.malloc.arena_max=2')) > 0, "asked for after the user's other tunables");
  assert.equal(await engineHugePagesKb('glibc.malloc.hugetlb=0'), 0, 'the user said not to');
});
