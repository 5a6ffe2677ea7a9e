import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { benchCommand } from '../../src/cli/bench';
import { median } from '../../src/cli/benchTiming';
import { FicocoError } from '../../src/common/errors';
import { countingGenerations, stoppingAtGeneration } from '../helpers/generations';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();

const MODEL = path.join(__dirname, '..', 'fixtures', 'tiny-llava-llama');

/** The report's table rows, keyed "method budget", each cell under its column's heading. */
function tableRows(markdown: string): Map<string, Record<string, string>> {
  const lines = markdown.split('\n').filter((line) => line.startsWith('| '));
  const cellsOf = (line: string) =>
    line
      .split('|')
      .slice(1, -1)
      .map((cell) => cell.trim());
  const headings = cellsOf(lines[0]);
  return new Map(
    lines.slice(1).map((line) => {
      const cells = cellsOf(line);
      return [`${cells[0]} ${cells[1]}`, Object.fromEntries(headings.map((heading, i) => [heading, cells[i]]))];
    }),
  );
}

test('ficoco bench measures each method and budget against the unreduced model and writes the table and charts', async () => {
  const out = temporaryFolder('ficoco-bench-');
  assert.equal(
    await benchCommand([
      '--model',
      MODEL,
      '--methods',
      'ficoco-v,fastv',
      '--budgets',
      '12,4',
      '--runs',
      '2',
      '--decode',
      '3',
      '--out',
      out,
      '--name',
      'check',
    ]),
    0,
  );
  const report = fs.readFileSync(path.join(out, 'check.md'), 'utf8');
  const rows = tableRows(report);
  assert.deepEqual([...rows.keys()], ['none all', 'ficoco-v 12', 'ficoco-v 4', 'fastv 12', 'fastv 4']);
  const unreduced = rows.get('none all')!;
  assert.equal(unreduced['visual tokens kept'], '36');
  assert.equal(unreduced['prefill speedup'], '1.00×');
  assert.equal(unreduced['CPU-time speedup'], '1.00×');
  assert.equal(unreduced['FLOPs ratio'], '1.00×');
  assert.equal(unreduced['causal FLOPs ratio (speedup / it)'], '1.00× (100 %)');
  assert.equal(unreduced['LLM prefill speedup (LLM FLOPs ratio)'], '1.00× (1.00×)');
  assert.match(unreduced['reduction steps ms (% of prefill)'], /^0\.0 /);
  assert.match(unreduced['steps CPU ms (% of prefill CPU)'], /^0\.0 /);
  // The table rounds (a fast machine's vision ms reads 0); the JSON beside it has every figure unrounded.
  const [unreducedRaw] = (
    JSON.parse(fs.readFileSync(path.join(out, 'check.json'), 'utf8')) as { rows: Record<string, number>[] }
  ).rows;
  for (const field of ['visionMs', 'llmMs', 'ttftMs', 'decodeTokensPerSecond', 'peakMiB'])
    assert.ok(unreducedRaw[field] > 0, `${field} ${unreducedRaw[field]} is a positive measurement`);
  if (process.platform === 'linux')
    assert.match(unreduced['CPU steal'], /^\d+\.\d %$/, 'steal is read from /proc/stat');
  assert.match(report, /Major page faults over the whole run: \d+\./);
  for (const [key, row] of rows) {
    if (key === 'none all') continue;
    const budget = Number(key.split(' ')[1]);
    assert.equal(Number(row['visual tokens kept']), budget, `${key} keeps its budget`);
    assert.ok(parseFloat(row['prefill speedup']) > 0, `${key} has a measured speedup`);
    assert.ok(parseFloat(row['CPU-time speedup']) > 0, `${key} has a CPU-time speedup`);
    assert.match(
      row['steps CPU ms (% of prefill CPU)'],
      /^\d+\.\d \(\d+\.\d %\)$/,
      `${key} times its steps in CPU time`,
    );
    // Fewer tokens can only lower the analytic FLOPs.
    assert.ok(parseFloat(row['FLOPs ratio']) > 1, `${key} FLOPs ratio ${row['FLOPs ratio']}`);
    // Counting only the scores a causal mask keeps takes more from the longer prompt: a smaller ratio, still above 1.
    const [causalRatio, causalShare] = row['causal FLOPs ratio (speedup / it)'].split(' (').map(parseFloat);
    assert.ok(
      causalRatio > 1 && causalRatio < parseFloat(row['FLOPs ratio']),
      `${key} causal FLOPs ratio ${causalRatio} against ${row['FLOPs ratio']}`,
    );
    const share = (100 * parseFloat(row['prefill speedup'])) / causalRatio; // from rounded figures: within a point
    assert.ok(
      Math.abs(causalShare - share) <= 1,
      `${key}: ${causalShare} % of the causal ratio, ${share} from the table`,
    );
    // The LLM prefill alone, the part the paper's FLOPs count: measured, and fewer tokens there lower its FLOPs.
    const [llmSpeedup, llmRatio] = row['LLM prefill speedup (LLM FLOPs ratio)'].split(' (').map(parseFloat);
    assert.ok(llmSpeedup > 0, `${key} has a measured LLM prefill speedup`);
    assert.ok(llmRatio > 1, `${key} LLM FLOPs ratio ${llmRatio}`);
    assert.ok(Number(row['decode tokens/s']) > 0, `${key} decodes`);
  }
  assert.ok(
    parseFloat(rows.get('fastv 4')!['FLOPs ratio']) > parseFloat(rows.get('fastv 12')!['FLOPs ratio']),
    'a smaller budget saves more FLOPs',
  );
  const speedupSvg = fs.readFileSync(path.join(out, 'check-speedup.svg'), 'utf8');
  assert.equal((speedupSvg.match(/<polyline/g) ?? []).length, 2, 'one line per method');
  const flopsSvg = fs.readFileSync(path.join(out, 'check-vs-flops.svg'), 'utf8');
  assert.match(flopsSvg, /stroke-dasharray/, 'the y = x limit is drawn');
});

test('ficoco bench budgets default to a third, two ninths and a ninth of the visual tokens', async () => {
  const out = temporaryFolder('ficoco-bench-');
  assert.equal(
    await benchCommand([
      '--model',
      MODEL,
      '--methods',
      'random',
      '--runs',
      '1',
      '--decode',
      '0',
      '--out',
      out,
      '--name',
      'defaults',
    ]),
    0,
  );
  const rows = tableRows(fs.readFileSync(path.join(out, 'defaults.md'), 'utf8'));
  assert.deepEqual([...rows.keys()], ['none all', 'random 12', 'random 8', 'random 4']);
  assert.equal(rows.get('random 8')!['decode tokens/s'], '–', 'no decode asked for');
});

test('ficoco bench rejects wrong options before loading anything', async () => {
  await assert.rejects(
    benchCommand(['--model', MODEL, '--runs', '0']),
    (error: FicocoError) => error.kind === 'input' && /--runs 0/.test(error.message),
  );
  await assert.rejects(benchCommand(['--model', MODEL, '--provider', 'tpu']), /--provider tpu is not known/);
  await assert.rejects(benchCommand(['--model', MODEL, '--budgets', 'lots']), /--budgets lots/);
  await assert.rejects(
    benchCommand(['--model', MODEL, '--methods', 'ficoco-v,tome', '--param', 'start=0']),
    /--param needs exactly one method/,
  );
});

test('ficoco bench refuses a budget or a parameter no method can run before timing anything', async () => {
  const out = temporaryFolder('ficoco-bench-refused-');
  const args = ['--model', MODEL, '--runs', '1', '--decode', '0', '--out', out];
  const generations = await countingGenerations(async () => {
    // The test model gives 36 visual tokens: ficoco-v at 12 would run, then 100 stopped the run after it.
    await assert.rejects(
      benchCommand([...args, '--methods', 'ficoco-v', '--budgets', '12,100']),
      /--budgets 100 is more than the 36 visual tokens this model gives an image: give budgets of at most 36/,
    );
    await assert.rejects(
      benchCommand([...args, '--methods', 'ficoco-v', '--budgets', '12', '--param', 'radius=3']),
      /ficoco-v has no parameter "radius"/,
    );
  });
  assert.equal(generations, 0);
  assert.deepEqual(fs.readdirSync(out), []);
});

test('ficoco bench --param runs the method with that parameter', async () => {
  const out = temporaryFolder('ficoco-bench-');
  const flopsRatio = async (params: string[]) => {
    const name = `start${params.length}`;
    const args = ['--model', MODEL, '--methods', 'ficoco-v', '--budgets', '4', '--runs', '1', '--decode', '0'];
    assert.equal(await benchCommand([...args, ...params, '--out', out, '--name', name]), 0);
    return parseFloat(
      tableRows(fs.readFileSync(path.join(out, `${name}.md`), 'utf8')).get('ficoco-v 4')!['FLOPs ratio'],
    );
  };
  // Reducing from the first vision layer on saves more than from the default start halfway up the tower.
  assert.ok((await flopsRatio(['--param', 'start=0'])) > (await flopsRatio([])));
});

test('ficoco bench stopped part-way leaves the report of the methods it finished, marked partial', async () => {
  const out = temporaryFolder('ficoco-bench-partial-');
  const args = ['--model', MODEL, '--methods', 'fastv,ficoco-v', '--budgets', '12,4', '--runs', '1', '--decode', '0'];
  const files = ['partial-speedup.svg', 'partial-vs-flops.svg', 'partial.json', 'partial.md'];
  // Two unreduced prefills, then fastv's warm-up, a round of [unreduced, 12, 4]; the 7th, ficoco-v's warm-up, fails
  // as a killed run would stop.
  await stoppingAtGeneration(7, () =>
    assert.rejects(benchCommand([...args, '--out', out, '--name', 'partial']), /stopped/),
  );
  assert.deepEqual(fs.readdirSync(out).sort(), files, 'the four files, and no temporary one');
  const report = fs.readFileSync(path.join(out, 'partial.md'), 'utf8');
  assert.match(report, /\*\*Partial\*\*: 1 of 2 methods; the run stopped, or is still running, before the rest\./);
  assert.deepEqual([...tableRows(report).keys()], ['none all', 'fastv 12', 'fastv 4']);
  const json = JSON.parse(fs.readFileSync(path.join(out, 'partial.json'), 'utf8')) as {
    partial?: unknown;
    rows: { method: string }[];
  };
  assert.deepEqual(json.partial, { methodsDone: 1, methods: 2 });
  assert.deepEqual(
    json.rows.map((row) => row.method),
    ['none', 'fastv', 'fastv'],
  );
  assert.equal((fs.readFileSync(path.join(out, 'partial-speedup.svg'), 'utf8').match(/<polyline/g) ?? []).length, 1);

  // Finished, the report is whole again.
  assert.equal(await benchCommand([...args, '--out', out, '--name', 'partial']), 0);
  const whole = fs.readFileSync(path.join(out, 'partial.md'), 'utf8');
  assert.doesNotMatch(whole, /Partial/);
  assert.deepEqual([...tableRows(whole).keys()], ['none all', 'fastv 12', 'fastv 4', 'ficoco-v 12', 'ficoco-v 4']);
  assert.equal(
    (JSON.parse(fs.readFileSync(path.join(out, 'partial.json'), 'utf8')) as { partial?: unknown }).partial,
    undefined,
  );
  assert.deepEqual(fs.readdirSync(out).sort(), files);
});

test('ficoco bench stopped in its first method leaves the unreduced row, marked partial: 0 of N methods', async () => {
  const out = temporaryFolder('ficoco-bench-first-');
  const args = ['--model', MODEL, '--methods', 'fastv,ficoco-v', '--budgets', '12,4', '--runs', '1', '--decode', '0'];
  // Two unreduced prefills; the 3rd, fastv's warm-up, fails as a run killed during its first method would stop.
  await stoppingAtGeneration(3, () =>
    assert.rejects(benchCommand([...args, '--out', out, '--name', 'first']), /stopped/),
  );
  assert.deepEqual(fs.readdirSync(out).sort(), ['first-speedup.svg', 'first-vs-flops.svg', 'first.json', 'first.md']);
  const report = fs.readFileSync(path.join(out, 'first.md'), 'utf8');
  assert.match(report, /\*\*Partial\*\*: 0 of 2 methods; the run stopped, or is still running, before the rest\./);
  assert.deepEqual([...tableRows(report).keys()], ['none all']);
  const json = JSON.parse(fs.readFileSync(path.join(out, 'first.json'), 'utf8')) as { partial?: unknown };
  assert.deepEqual(json.partial, { methodsDone: 0, methods: 2 });
  for (const chart of ['first-speedup.svg', 'first-vs-flops.svg'])
    assert.doesNotMatch(fs.readFileSync(path.join(out, chart), 'utf8'), /NaN|Infinity/, `${chart}: an empty chart`);
});

test('medians of odd and even counts', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});
