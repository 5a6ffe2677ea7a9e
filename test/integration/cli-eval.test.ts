import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { evalCommand } from '../../src/cli/eval';
import { answerMatches, readEvalSet } from '../../src/cli/evalSet';
import { LlavaEngine } from '../../src/engine/engine';
import { countingGenerations, stoppingAtGeneration } from '../helpers/generations';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const MODEL = path.join(FIXTURES, 'tiny-llava-llama');

test('answers match on their first words, ignoring case and punctuation', () => {
  assert.ok(answerMatches('Red.', 'red'));
  assert.ok(answerMatches('red box on the left', 'red'));
  assert.ok(answerMatches('Top left!', 'top left'));
  assert.ok(!answerMatches('reddish', 'red'));
  assert.ok(!answerMatches('blue', 'red'));
  assert.ok(!answerMatches('', 'red'));
  // A number is one word: its decimal point, clock colon or thousands comma does not split it.
  assert.ok(!answerMatches('3.5 cm', '3'));
  assert.ok(!answerMatches('1,000', '1'));
  assert.ok(!answerMatches('10:30', '10'));
  assert.ok(answerMatches('3.5.', '3.5'));
  assert.ok(answerMatches('About 1,000 people', 'about 1000'));
  assert.ok(answerMatches('At 10:30.', 'at 10:30'));
  assert.ok(answerMatches('3. Then 4', '3'));
});

test('ficoco eval scores each method and budget and writes the table and chart', async (t) => {
  // Expected answers are what the unreduced test model says, so the full-token row must score 100 %.
  const engine = await LlavaEngine.load(MODEL);
  const dir = temporaryFolder('ficoco-eval-');
  const items = [];
  for (const [image, question] of [
    ['shapes.png', 'what colour is the big box ?'],
    ['diagram.png', 'which box does the arrow point to ?'],
  ]) {
    fs.copyFileSync(path.join(FIXTURES, 'images', image), path.join(dir, image));
    const answer = await engine.ask({
      question,
      images: [{ bytes: fs.readFileSync(path.join(dir, image)), name: image }],
      maxNewTokens: 4,
    });
    items.push({ image, question, answer: answer.text.split(' ')[0], type: image.replace('.png', '') });
  }
  await engine.dispose();
  fs.writeFileSync(path.join(dir, 'set.jsonl'), items.map((item) => JSON.stringify(item)).join('\n'));

  const out = path.join(dir, 'out');
  const progress: string[] = [];
  t.mock.method(process.stderr, 'write', (chunk: string) => progress.push(chunk) > 0);
  assert.equal(
    await evalCommand([
      '--model',
      MODEL,
      '--data',
      path.join(dir, 'set.jsonl'),
      '--methods',
      'ficoco-v,fastv',
      '--budgets',
      '12,4',
      '--out',
      out,
      '--name',
      'check',
    ]),
    0,
  );
  t.mock.restoreAll();
  // A line per setting: its score says what it counts, apart from how far the run has got.
  assert.equal(progress.length, 5);
  assert.equal(progress[0], 'none all: 100.0 % right (2 of 2 answers); setting 1 of 5\n');
  assert.match(progress[4], /^fastv 4: \d+\.\d % right \([0-2] of 2 answers\); setting 5 of 5\n$/);
  const table = fs.readFileSync(path.join(out, 'check.md'), 'utf8');
  assert.match(table, /\| none \| all \| 36\.0 \| 100\.0 \| 100\.0 \| 100\.0 \|/);
  // Two items of different types, one answer each: both baselines score 100 % per type.
  assert.match(table, /\| uniform guess among the type's answers \| 100\.0 \| 100\.0 \| 100\.0 \|/);
  for (const row of ['ficoco-v | 12 | 12.0', 'ficoco-v | 4 | 4.0', 'fastv | 12 | 12.0', 'fastv | 4 | 4.0'])
    assert.ok(table.includes(`| ${row} |`), row);
  const svg = fs.readFileSync(path.join(out, 'check.svg'), 'utf8');
  assert.equal((svg.match(/<polyline/g) ?? []).length, 2, 'one line per method');

  // An ablation: parameters apply to the method and name its rows; a parameter the method lacks stops the run before
  // any load.
  const data = [
    '--model',
    MODEL,
    '--data',
    path.join(dir, 'set.jsonl'),
    '--methods',
    'ficoco-v',
    '--budgets',
    '4',
    '--out',
    out,
  ];
  assert.equal(
    await evalCommand([
      ...data,
      '--param',
      'penalty=1',
      '--param',
      'weights=paper',
      '--threads',
      '2',
      '--name',
      'ablation',
    ]),
    0,
  );
  const ablation = fs.readFileSync(path.join(out, 'ablation.md'), 'utf8');
  assert.ok(ablation.includes('| ficoco-v penalty=1 weights=paper | 4 | 4.0 |'));
  // The prefill times' conditions: the provider and the threads asked for.
  assert.match(ablation, /ONNX Runtime cpu provider with 2 intra-op threads/);
  assert.match(
    table,
    /ONNX Runtime cpu provider with 1 intra-op thread\b/,
    'a tiny model runs on one thread by default',
  );
  await assert.rejects(
    evalCommand([...data, '--param', 'radius=3', '--name', 'wrong']),
    /ficoco-v has no parameter "radius"; its parameters are start, schedule, weights/,
  );
  assert.ok(!fs.existsSync(path.join(out, 'wrong.md')));
});

test('on a tiled model ficoco eval defaults to shares of each image, which fit a small screenshot', async () => {
  const dir = temporaryFolder('ficoco-eval-tiled-');
  fs.copyFileSync(path.join(FIXTURES, 'images', 'screenshot.png'), path.join(dir, 'screenshot.png'));
  const item = { image: 'screenshot.png', question: 'what is shown ?', answer: 'x', type: 'screen' };
  fs.writeFileSync(path.join(dir, 'set.jsonl'), JSON.stringify(item));
  const out = path.join(dir, 'out');
  const model = path.join(FIXTURES, 'tiny-llava-next-mistral');
  const args = ['--model', model, '--data', path.join(dir, 'set.jsonl'), '--methods', 'fastv', '--out', out];
  // The 160 × 90 screenshot brings 48 content tokens: 64 of them, the untiled default, would be refused.
  assert.equal(await evalCommand([...args, '--name', 'tiled']), 0);
  const table = fs.readFileSync(path.join(out, 'tiled.md'), 'utf8');
  for (const budget of ['11%', '5.6%', '2.8%']) assert.ok(table.includes(`| fastv | ${budget} |`), budget);
});

test('ficoco eval refuses a budget the model cannot keep before answering any item', async () => {
  const dir = temporaryFolder('ficoco-eval-budget-');
  fs.copyFileSync(path.join(FIXTURES, 'images', 'shapes.png'), path.join(dir, 'shapes.png'));
  fs.writeFileSync(path.join(dir, 'set.jsonl'), JSON.stringify({ image: 'shapes.png', question: 'q ?', answer: 'a' }));
  const args = ['--model', MODEL, '--data', path.join(dir, 'set.jsonl'), '--methods', 'fastv', '--out', dir];
  // 12 fits the test model's 36 visual tokens; 100 does not, and used to be refused only after the unreduced row.
  const generations = await countingGenerations(() =>
    assert.rejects(
      evalCommand([...args, '--budgets', '12,100']),
      /--budgets 100 is more than the 36 visual tokens this model gives an image: give budgets of at most 36/,
    ),
  );
  assert.equal(generations, 0);
  assert.ok(!fs.existsSync(path.join(dir, 'eval-tiny-llava-llama.md')));
});

test("on a tiled model a budget above some images' tokens is refused with the bound that fits every image", async () => {
  const dir = temporaryFolder('ficoco-eval-sizes-');
  // The 160 × 90 screenshot brings 144 visual tokens to reduce, the 40 × 120 strip after it 112.
  const items = ['screenshot.png', 'tall.png'].map((image) => {
    fs.copyFileSync(path.join(FIXTURES, 'images', image), path.join(dir, image));
    return JSON.stringify({ image, question: 'what is shown ?', answer: 'x' });
  });
  fs.writeFileSync(path.join(dir, 'set.jsonl'), items.join('\n'));
  const model = path.join(FIXTURES, 'tiny-llava-onevision-qwen2');
  const args = ['--model', model, '--data', path.join(dir, 'set.jsonl'), '--methods', 'fastv', '--out', dir];
  const generations = await countingGenerations(() =>
    assert.rejects(evalCommand([...args, '--budgets', '160']), {
      message:
        '--budgets 160 is more than the 112 visual tokens this model gives a 40 × 120 image: give budgets of at ' +
        'most 112, or shares such as 25%.',
    }),
  );
  assert.equal(generations, 0);
  // The bound it names is one every image keeps.
  assert.equal(await evalCommand([...args, '--budgets', '112', '--name', 'bound']), 0);
});

test('an evaluation set saved with a byte order mark reads from its first line', () => {
  const dir = temporaryFolder('ficoco-eval-bom-');
  fs.copyFileSync(path.join(FIXTURES, 'images', 'shapes.png'), path.join(dir, 'shapes.png'));
  const line = JSON.stringify({ image: 'shapes.png', question: 'what colour ?', answer: 'red', type: 'colour' });
  fs.writeFileSync(path.join(dir, 'set.jsonl'), `\uFEFF${line}\r\n${line}\r\n`);
  const items = readEvalSet(path.join(dir, 'set.jsonl'));
  assert.deepEqual(
    items.map((item) => [path.basename(item.image), item.answer, item.type]),
    [
      ['shapes.png', 'red', 'colour'],
      ['shapes.png', 'red', 'colour'],
    ],
  );
});

test("ficoco eval's baselines count answers as they are scored, case and punctuation aside", async () => {
  const dir = temporaryFolder('ficoco-eval-baseline-');
  fs.copyFileSync(path.join(FIXTURES, 'images', 'shapes.png'), path.join(dir, 'shapes.png'));
  const lines = ['Red.', 'red', ' RED'].map((answer) =>
    JSON.stringify({ image: 'shapes.png', question: 'what colour ?', answer, type: 'colour' }),
  );
  fs.writeFileSync(path.join(dir, 'set.jsonl'), lines.join('\n'));
  const args = ['--model', MODEL, '--data', path.join(dir, 'set.jsonl'), '--methods', 'fastv', '--budgets', '4'];
  assert.equal(await evalCommand([...args, '--out', dir, '--name', 'baseline']), 0);
  const table = fs.readFileSync(path.join(dir, 'baseline.md'), 'utf8');
  // One answer in three spellings: guessing it, or always giving it, scores every item.
  assert.match(table, /\| uniform guess among the type's answers \| 100\.0 \| 100\.0 \|/);
  assert.match(table, /\| the type's most common answer \| 100\.0 \| 100\.0 \|/);
});

test('ficoco eval stopped part-way leaves the report of the settings it finished, marked partial', async () => {
  const dir = temporaryFolder('ficoco-eval-partial-');
  fs.copyFileSync(path.join(FIXTURES, 'images', 'shapes.png'), path.join(dir, 'shapes.png'));
  fs.writeFileSync(path.join(dir, 'set.jsonl'), JSON.stringify({ image: 'shapes.png', question: 'q ?', answer: 'a' }));
  const args = ['--model', MODEL, '--data', path.join(dir, 'set.jsonl'), '--methods', 'fastv', '--budgets', '12,4'];
  // One item: the first generation is the unreduced row, the second fastv at 12, which fails as a killed run would.
  await stoppingAtGeneration(2, () =>
    assert.rejects(evalCommand([...args, '--out', dir, '--name', 'partial']), /stopped/),
  );
  const table = fs.readFileSync(path.join(dir, 'partial.md'), 'utf8');
  assert.match(table, /\*\*Partial\*\*: 1 of 3 settings/);
  assert.match(table, /\| none \| all \| 36\.0 \|/);
  assert.doesNotMatch(table, /\| fastv \|/);
  assert.match(fs.readFileSync(path.join(dir, 'partial.svg'), 'utf8'), /<\/svg>\n$/);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['partial.md', 'partial.svg', 'set.jsonl', 'shapes.png']);

  // Finished, the report is whole again.
  assert.equal(await evalCommand([...args, '--out', dir, '--name', 'partial']), 0);
  const whole = fs.readFileSync(path.join(dir, 'partial.md'), 'utf8');
  assert.doesNotMatch(whole, /Partial/);
  for (const row of ['none | all', 'fastv | 12', 'fastv | 4']) assert.ok(whole.includes(`| ${row} |`), row);
});
