import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { benchCommand } from '../../src/cli/bench';
import { median } from '../../src/cli/benchTiming';
import { FicocoError } from '../../src/engine/errors';

const MODEL = path.join(__dirname, '..', 'fixtures', 'tiny-llava-llama');

/** The report's table rows as cells, keyed "method budget". */
function tableRows(markdown: string): Map<string, string[]> {
  const rows = markdown.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| method') && !line.startsWith('|---'));
  return new Map(rows.map((line) => {
    const cells = line.split('|').slice(1, -1).map((cell) => cell.trim());
    return [`${cells[0]} ${cells[1]}`, cells];
  }));
}

test('ficoco bench measures each method and budget against the unreduced model and writes the table and charts', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-bench-'));
  assert.equal(await benchCommand(['--model', MODEL, '--methods', 'ficoco-v,fastv', '--budgets', '12,4', '--runs', '2', '--decode', '3', '--out', out, '--name', 'check']), 0);
  const rows = tableRows(fs.readFileSync(path.join(out, 'check.md'), 'utf8'));
  assert.deepEqual([...rows.keys()], ['none all', 'ficoco-v 12', 'ficoco-v 4', 'fastv 12', 'fastv 4']);
  const [, , kept, visionMs, llmMs, ttftMs, speedup, flopsRatio, , steps, decode, peak] = rows.get('none all')!;
  assert.equal(kept, '36');
  assert.equal(speedup, '1.00×');
  assert.equal(flopsRatio, '1.00×');
  assert.match(steps, /^0\.0 /);
  for (const value of [visionMs, llmMs, ttftMs, decode, peak]) assert.ok(Number(value) > 0, `${value} is a positive measurement`);
  for (const [key, cells] of rows) {
    if (key === 'none all') continue;
    const budget = Number(key.split(' ')[1]);
    assert.equal(Number(cells[2]), budget, `${key} keeps its budget`);
    assert.ok(parseFloat(cells[6]) > 0, `${key} has a measured speedup`);
    // Fewer tokens can only lower the analytic FLOPs.
    assert.ok(parseFloat(cells[7]) > 1, `${key} FLOPs ratio ${cells[7]}`);
    assert.ok(Number(cells[10]) > 0, `${key} decodes`);
  }
  assert.ok(parseFloat(rows.get('fastv 4')![7]) > parseFloat(rows.get('fastv 12')![7]), 'a smaller budget saves more FLOPs');
  const speedupSvg = fs.readFileSync(path.join(out, 'check-speedup.svg'), 'utf8');
  assert.equal((speedupSvg.match(/<polyline/g) ?? []).length, 2, 'one line per method');
  const flopsSvg = fs.readFileSync(path.join(out, 'check-vs-flops.svg'), 'utf8');
  assert.match(flopsSvg, /stroke-dasharray/, 'the y = x limit is drawn');
});

test('ficoco bench budgets default to a third, two ninths and a ninth of the visual tokens', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-bench-'));
  assert.equal(await benchCommand(['--model', MODEL, '--methods', 'random', '--runs', '1', '--decode', '0', '--out', out, '--name', 'defaults']), 0);
  const rows = tableRows(fs.readFileSync(path.join(out, 'defaults.md'), 'utf8'));
  assert.deepEqual([...rows.keys()], ['none all', 'random 12', 'random 8', 'random 4']);
  assert.equal(rows.get('random 8')![10], '–', 'no decode asked for');
});

test('ficoco bench rejects wrong options before loading anything', async () => {
  await assert.rejects(benchCommand(['--model', MODEL, '--runs', '0']), (error: FicocoError) => error.kind === 'input' && /--runs 0/.test(error.message));
  await assert.rejects(benchCommand(['--model', MODEL, '--provider', 'tpu']), /--provider tpu is not known/);
  await assert.rejects(benchCommand(['--model', MODEL, '--budgets', 'lots']), /--budget lots/);
});

test('medians of odd and even counts', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});
