/**
 * `ficoco tune` on a copy of the built-in model: it measures each setting, writes the model folder's
 * recommendation with its table, and `auto` then answers with it.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { chooseSetting, tuneCommand } from '../../src/cli/tune';
import { LlavaEngine } from '../../src/engine/engine';
import { RECOMMENDATION_FILE, Recommendation } from '../../src/engine/recommendation';
import { countingGenerations } from '../helpers/generations';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();
const ROOT = path.join(__dirname, '..', '..');
const BUILTIN = path.join(ROOT, 'models', 'tiny-llava-screens');
const EVAL_SET = path.join(ROOT, 'bench', 'eval-set', 'data.jsonl');

/**
 * `ficoco tune` with what it prints to stdout. Only its text is taken: the test runner's own reports (bytes, on the same
 * stream) pass through, or the results of other tests would be lost.
 */
async function tuneReport(args: string[]): Promise<{ code: number; report: string }> {
  const written: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) =>
    typeof chunk === 'string' ? written.push(chunk) > 0 : write(chunk, ...rest)) as typeof process.stdout.write;
  try {
    return { code: await tuneCommand(args), report: written.join('') };
  } finally {
    process.stdout.write = write;
  }
}

test('ficoco tune writes the fastest setting within the bar into the model folder, and auto uses it', async () => {
  const model = temporaryFolder('ficoco-tune-');
  for (const file of fs.readdirSync(BUILTIN)) fs.copyFileSync(path.join(BUILTIN, file), path.join(model, file));
  const args = ['--model', model, '--data', EVAL_SET, '--limit', '24', '--methods', 'tome,divprune'];
  const { code, report } = await tuneReport([...args, '--budgets', '128,64', '--runs', '2', '--keep', '0.9']);
  assert.equal(code, 0);
  const recommendation = JSON.parse(fs.readFileSync(path.join(model, RECOMMENDATION_FILE), 'utf8')) as Recommendation;
  assert.equal(recommendation.format, 1);
  assert.equal(recommendation.bar, 0.9);
  assert.equal(recommendation.data.items, 24);
  assert.deepEqual(
    recommendation.table.map((row) => `${row.method} ${row.budget}`),
    ['none all', 'tome 128', 'tome 64', 'divprune 128', 'divprune 64'],
  );
  const [full] = recommendation.table;
  assert.equal(full.speedup, 1);
  assert.equal(recommendation.fullAccuracy, full.accuracy);
  for (const row of recommendation.table.slice(1)) {
    assert.ok(row.accuracy >= 0 && row.accuracy <= 1 && row.speedup > 0, JSON.stringify(row));
    assert.ok(row.keptTokens <= 144);
  }
  // The written choice is the rule applied to the written table.
  const chosen = chooseSetting(recommendation.table, 0.9);
  assert.deepEqual([recommendation.method, recommendation.budget], [chosen.method, chosen.budget]);
  assert.ok(recommendation.accuracy >= 0.9 * full.accuracy);
  assert.match(report, /\| method \| budget \| visual tokens kept \| accuracy % \| of full-token % \| prefill speedup/);
  assert.match(report, new RegExp(`Chosen: \\*\\*${chosen.method} ${chosen.budget}\\*\\*`));

  const engine = await LlavaEngine.load(model);
  try {
    const answer = await engine.ask({
      question: 'which box does the arrow point to ?',
      images: [
        { bytes: fs.readFileSync(path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png')), name: 'a.png' },
      ],
      reduction: { method: 'auto' },
      maxNewTokens: 2,
    });
    assert.equal(answer.stats.reduction?.rule, 'model');
    assert.deepEqual([answer.stats.reduction?.method, answer.stats.reduction?.budget], [chosen.method, chosen.budget]);
    assert.match(answer.stats.reduction!.why, /Measured for this model \(ficoco tune\)/);
  } finally {
    await engine.dispose();
  }
});

test('ficoco tune refuses a bar above 1 and an unknown method before loading anything', async () => {
  await assert.rejects(tuneCommand(['--data', EVAL_SET, '--keep', '1.5']), /--keep 1\.5 is a share .* at most 1/);
  await assert.rejects(tuneCommand(['--data', EVAL_SET, '--methods', 'magic']), /Unknown reduction method "magic"/);
  await assert.rejects(tuneCommand([]), /--data FILE\.jsonl is required/);
});

test('ficoco tune refuses a budget the model cannot keep before scoring or timing anything', async () => {
  const out = path.join(temporaryFolder('ficoco-tune-refused-'), 'recommendation.json');
  const args = ['--model', BUILTIN, '--data', EVAL_SET, '--limit', '2', '--methods', 'tome', '--runs', '1'];
  // The built-in model gives 144 visual tokens; 200 used to be refused after the set was answered unreduced.
  const generations = await countingGenerations(() =>
    assert.rejects(
      tuneCommand([...args, '--budgets', '64,200', '--out', out]),
      /--budgets 200 is more than the 144 visual tokens this model gives an image: give budgets of at most 144/,
    ),
  );
  assert.equal(generations, 0);
  assert.ok(!fs.existsSync(out));
});

test("on a tiled model ficoco tune refuses a budget above some images' tokens with the bound every image fits", async () => {
  const folder = temporaryFolder('ficoco-tune-sizes-');
  // The 160 × 90 screenshot brings 144 visual tokens to reduce, the 40 × 120 strip after it 112.
  const items = ['screenshot.png', 'tall.png'].map((image) =>
    JSON.stringify({ image: path.join(ROOT, 'test', 'fixtures', 'images', image), question: 'what ?', answer: 'x' }),
  );
  fs.writeFileSync(path.join(folder, 'data.jsonl'), items.join('\n'));
  const model = path.join(ROOT, 'test', 'fixtures', 'tiny-llava-onevision-qwen2');
  const args = ['--model', model, '--data', path.join(folder, 'data.jsonl'), '--methods', 'random', '--runs', '1'];
  const generations = await countingGenerations(() =>
    assert.rejects(tuneCommand([...args, '--budgets', '160', '--out', path.join(folder, 'recommendation.json')]), {
      message:
        '--budgets 160 is more than the 112 visual tokens this model gives a 40 × 120 image: give budgets of at ' +
        'most 112, or shares such as 25%.',
    }),
  );
  assert.equal(generations, 0);
});

test("on a tiled model ficoco tune tries shares of the image, which auto then applies to any image's size", async () => {
  const model = temporaryFolder('ficoco-tune-tiled-');
  fs.cpSync(path.join(ROOT, 'test', 'fixtures', 'tiny-llava-onevision-qwen2'), model, { recursive: true });
  const data = path.join(temporaryFolder('ficoco-tune-data-'), 'data.jsonl');
  const image = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png');
  fs.writeFileSync(data, `${JSON.stringify({ image, question: 'which box ?', answer: 'g' })}\n`);
  const { code, report } = await tuneReport(['--model', model, '--data', data, '--methods', 'random', '--runs', '1']);
  assert.equal(code, 0);
  // The random-weight fixture answers none of the set: shares of a full-token accuracy of 0 read "–".
  assert.doesNotMatch(report, /NaN|Infinity/);
  // (The row is in bold where no method was faster by 5 % and none was chosen: timing decides.)
  assert.match(report, /\| (\*\*)?none(\*\*)? \| all \| [\d.]+ \| 0\.0 \| – \|/);
  const recommendation = JSON.parse(fs.readFileSync(path.join(model, RECOMMENDATION_FILE), 'utf8')) as Recommendation;
  assert.deepEqual(
    recommendation.table.map((row) => row.budget),
    ['all', '89%', '78%', '67%', '56%', '44%', '33%', '22%', '11%'],
  );
  const engine = await LlavaEngine.load(model);
  try {
    // A share fits an image of any size, however few tokens it brings.
    const answer = await engine.ask({
      question: 'what is this ?',
      images: [{ bytes: fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'images', 'banner.png')), name: 'b.png' }],
      reduction: { method: 'auto' },
      maxNewTokens: 1,
    });
    assert.equal(answer.stats.reduction?.rule, 'model');
  } finally {
    await engine.dispose();
  }
});
