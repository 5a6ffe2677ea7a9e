import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli } from '../helpers/cli';

const ROOT = path.join(__dirname, '..', '..');

async function flops(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await runCli(['flops', ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

test('ficoco flops on a tiled architecture counts a screenshot at its own size', async () => {
  const next = await flops('--arch', 'llava-next-mistral-7b', '--image-size', '1920x1080');
  assert.equal(next.code, 0, next.stderr);
  assert.match(next.stdout, /^llava-next-mistral-7b @ 1920×1080: vision 23\/24 layers × 577 tokens × 5 passes/);
  assert.match(next.stdout, /1948 visual tokens to the LLM/);
  // Default budgets for a tiled image: all, 25 % and 11 % of its visual tokens.
  const rows = next.stdout.split('\n').filter((line) => /^\| \d+\/1948 /.test(line));
  assert.deepEqual(
    rows.map((line) => line.split(' | ')[0]),
    ['| 1948/1948', '| 487/1948', '| 214/1948'],
  );
  const onevision = await flops('--arch', 'llava-onevision-qwen2-0.5b');
  assert.match(onevision.stdout, /@ 1920×1080: vision 26\/26 layers × 729 tokens × 16 passes .* 7269 visual tokens/);
});

test('ficoco flops --budgets takes shares of the image as well as counts, and 0', async () => {
  const shares = await flops('--arch', 'llava-1.5-7b', '--budgets', '50%,64,0.25,0');
  assert.equal(shares.code, 0, shares.stderr);
  const rows = shares.stdout.split('\n').filter((line) => /^\| \d+\/576 /.test(line));
  assert.deepEqual(
    rows.map((line) => line.split(' | ')[0]),
    ['| 288/576', '| 64/576', '| 144/576', '| 0/576'],
  );
  const wrong = await flops('--arch', 'llava-1.5-7b', '--budgets', 'half');
  assert.notEqual(wrong.code, 0);
});

test('ficoco flops --image reads the size from the file header', async () => {
  // The README's screenshot: a 1400 × 900 PNG.
  const screenshot = path.join(ROOT, 'media', 'screenshots', 'chat.png');
  const next = await flops('--arch', 'llava-next-mistral-7b', '--image', screenshot);
  assert.equal(next.code, 0, next.stderr);
  assert.match(next.stdout, /^llava-next-mistral-7b @ 1400×900: .* × 5 passes .* 2046 visual tokens/);
  // A 64 × 48 JPEG whose EXIF orientation turns it a quarter: counted upright, as the engine reads it.
  const portrait = await flops(
    '--arch',
    'llava-onevision-qwen2-0.5b',
    '--image',
    'test/fixtures/preprocess/portrait.jpg',
  );
  assert.match(portrait.stdout, /@ 48×64: .* 1323 visual tokens/);
  const both = await flops('--arch', 'llava-next-mistral-7b', '--image', screenshot, '--image-size', '10x10');
  assert.equal(both.code, 2);
  assert.match(both.stderr, /^error: give --image FILE or --image-size WxH, not both\.$/m);
  const notImage = await flops('--arch', 'llava-next-mistral-7b', '--image', path.join(ROOT, 'package.json'));
  assert.equal(notImage.code, 2);
  assert.match(notImage.stderr, /package\.json/);
});

test('ficoco flops: --image-size where it means nothing, or malformed, is one clear line and exit code 2', async () => {
  const fixed = await flops('--arch', 'llava-1.5-7b', '--image-size', '1920x1080');
  assert.equal(fixed.code, 2);
  assert.match(
    fixed.stderr,
    /^error: llava-1\.5-7b sees every image at 336 px; --image-size is for tiled architectures\.$/m,
  );
  const malformed = await flops('--arch', 'llava-next-mistral-7b', '--image-size', '1920by1080');
  assert.equal(malformed.code, 2);
  assert.match(
    malformed.stderr,
    /^error: --image-size 1920by1080 must be WIDTHxHEIGHT in pixels, e\.g\. 1920x1080\.$/m,
  );
});

test('ficoco flops --method on a tiled architecture: every pass runs the tower steps, the decoder its own', async () => {
  const onevision = (...args: string[]) =>
    flops('--arch', 'llava-onevision-qwen2-0.5b', '--text-tokens', '40', '--budget', '11%', '--method', ...args);
  const inTower = await onevision('ficoco-v');
  assert.equal(inTower.code, 0, inTower.stderr);
  // 11 % of the 7,209 content tokens (7,269 less 60 row ends), in proportion to each pass's patches on the image:
  // 53.26 of the base image's 729 and of each of the five whole tiles', 47.34 of the 648 of each of the ten tiles
  // with 81 patches on padding; the five tokens the floors leave go to the largest remainders, the first five 47s.
  assert.match(inTower.stdout, /ficoco-v, 793\/7209 of the image's visual tokens kept \(its 60 row ends besides\)/);
  assert.match(
    inTower.stdout,
    /each pass keeps the same share of its tokens on the image, 53 \+ (48 \+ ){5}(53 \+ ){5}(47 \+ ){4}47 = 793 \(a whole pass 53\/729\): vision:14 −57,/,
  );
  // Layer rows add up the 16 passes: the last tower layer takes them from 1,624 tokens to the 793 kept.
  assert.match(inTower.stdout, /\| vision 25 \(16 passes\) \| 1624 → 793 \|/);
  const ratio = (stdout: string, part: string) =>
    Number(new RegExp(`\\| ${part} [^|]*\\| [\\d.]+ \\| [\\d.]+ \\| ([\\d.]+)`).exec(stdout)![1]);
  assert.ok(ratio(inTower.stdout, 'vision TFLOPs') < 1 && ratio(inTower.stdout, 'LLM prefill TFLOPs') < 0.1);
  // Counting only the scores a causal mask keeps shrinks the unreduced decoder most, so every ratio comes out smaller.
  const causalLlm = ratio(inTower.stdout, 'LLM prefill TFLOPs, causal');
  assert.ok(causalLlm > ratio(inTower.stdout, 'LLM prefill TFLOPs') && causalLlm < 0.1);
  assert.ok(ratio(inTower.stdout, 'total TFLOPs, causal') > ratio(inTower.stdout, 'total TFLOPs'));
  // FasterVLM ranks the passes together: the counts of each depend on the image, only their sum on the budget.
  const ranked = await onevision('fastervlm');
  assert.match(
    ranked.stdout,
    /In the tower the passes are ranked together and keep 793 in all \(as shares of their tokens on the image: 53 \+ [\d +]+; a run gives each what it wins\): features −676\./,
  );
  const inDecoder = await onevision('fastv');
  assert.match(inDecoder.stdout, /Nothing in the tower\. In the decoder: llm:1 −6416\./);
  assert.equal(ratio(inDecoder.stdout, 'vision TFLOPs'), 1);
  assert.match(inDecoder.stdout, /\| LLM 1 \| 7309 → 893 \|/);
  // DivPrune chooses from the packed image before the decoder: every decoder layer reads the budget and the row ends.
  const packed = await onevision('divprune');
  assert.match(packed.stdout, /Nothing in the tower\. Before the decoder, on the packed image: packed −6416\./);
  assert.equal(ratio(packed.stdout, 'vision TFLOPs'), 1);
  assert.match(packed.stdout, /\| LLM 0 \| 893 \|/);
  const tooMany = await onevision('ficoco-v', '--budget', '7210');
  assert.equal(tooMany.code, 2);
  assert.match(tooMany.stderr, /more than the 7209 this model gives a 1920 × 1080 image/);
});

test('ficoco flops --method auto counts what auto chooses for a model folder, and needs one', async () => {
  const folder = path.join(ROOT, 'test', 'fixtures', 'tiny-llava-onevision-qwen2');
  const auto = await flops('--model', folder, '--method', 'auto', '--image-size', '1920x1080');
  assert.equal(auto.code, 0, auto.stderr);
  // Nothing measured or published for this folder: FiCoCo's default, planned over the screenshot as a run would.
  assert.match(auto.stdout, /auto: ficoco-v at 11%\. FiCoCo's default/);
  assert.match(auto.stdout, /ficoco-v, \d+\/\d+ of the image's visual tokens kept/);
  const noFolder = await flops('--arch', 'llava-onevision-qwen2-0.5b', '--method', 'auto');
  assert.notEqual(noFolder.code, 0);
  assert.match(noFolder.stderr, /--method auto stands for a model folder's choice .* give --model DIR/);
  const withBudget = await flops('--model', folder, '--method', 'auto', '--budget', '64');
  assert.notEqual(withBudget.code, 0);
  assert.match(withBudget.stderr, /chooses its own budget and parameters: leave out --budget and --param/);
});

test('ficoco flops refuses options it would not use before writing anything; --method none needs no budget', async () => {
  const refused: [string[], RegExp][] = [
    [['--budget', '64'], /^error: --budget needs --method NAME/],
    [['--param', 'penalty=1'], /^error: --param needs --method NAME/],
    [
      ['--method', 'tome', '--budget', '64', '--budgets', '64,32'],
      /^error: --budgets is for the table without --method/,
    ],
    [['--method', 'none', '--budget', '64'], /^error: --method none keeps every visual token: leave out --budget/],
    [['--method', 'tome', '--budget', '600'], /^error: a budget of 600 visual tokens is more than the 576/],
  ];
  for (const [args, message] of refused) {
    const run = await flops('--arch', 'llava-1.5-7b', ...args);
    assert.equal(run.code, 2, args.join(' '));
    assert.equal(run.stdout, '', `${args.join(' ')}: nothing on stdout`);
    assert.match(run.stderr, message);
  }
  const none = await flops('--arch', 'llava-1.5-7b', '--method', 'none');
  assert.equal(none.code, 0, none.stderr);
  const rows = none.stdout.split('\n').filter((line) => /^\| \d+\/576 /.test(line));
  assert.deepEqual(
    rows.map((line) => line.split(' | ')[0]),
    ['| 576/576'],
    'one row: every visual token',
  );
});

test('ficoco flops --param schedule plans the layers it lists; a schedule longer than the layers is one line', async () => {
  // The official FiCoCo-V code's constant r = 42 over layers 12…22: 576 − 11 · 42 = 114 tokens, 2.27 TFLOPs.
  const official = await flops(
    '--arch',
    'llava-1.5-7b',
    '--method',
    'ficoco-v',
    '--budget',
    '114',
    '--param',
    `schedule=${new Array<number>(11).fill(42).join(',')}`,
  );
  assert.equal(official.code, 0, official.stderr);
  const steps = Array.from({ length: 11 }, (_, i) => `vision:${12 + i} −42`).join(', ');
  assert.ok(official.stdout.includes(`ficoco-v, 114/576 visual tokens kept: ${steps}\n`), official.stdout);
  assert.match(official.stdout, /\| LLM prefill TFLOPs \(paper's accounting\) \| 2\.270 \|/);
  // A lone number is a list of one: the whole removal at the start layer.
  const one = await flops('--arch', 'llava-1.5-7b', '--method', 'ficoco-l', '--budget', '64', '--param', 'schedule=3');
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stdout, /ficoco-l, 64\/576 visual tokens kept: llm:5 −512\n/);
  const tooLong = await flops(
    '--arch',
    'llava-1.5-7b',
    '--method',
    'ficoco-v',
    '--budget',
    '114',
    '--param',
    'schedule=1,1,1,1,1,1,1,1,1,1,1,1',
  );
  assert.equal(tooLong.code, 2);
  assert.equal(tooLong.stdout, '');
  assert.equal(
    tooLong.stderr,
    'error: ficoco-v.schedule has 12 shares, but this model reduces at most 11 layers from its start, layer 12 ' +
      '(12…22): give at most 11, or start earlier.\n',
  );
});

test("ficoco flops writes a small model's figures in the unit they read in, not as zeros", async () => {
  const builtin = path.join(ROOT, 'models', 'tiny-llava-screens');
  const table = await flops('--model', builtin, '--method', 'ficoco-v', '--budget', '16');
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^\| layer \| tokens \(attention → MLP\) \| MFLOPs \| unreduced MFLOPs \|$/m);
  assert.match(table.stdout, /^\| total MFLOPs \| [1-9][\d.]* \| [1-9][\d.]* \| 0\.\d+ /m);
  const budgets = await flops('--model', builtin);
  assert.match(budgets.stdout, /^\| 144\/144 \| \d+ \| [1-9][\d.]* \| [1-9][\d.]* \| [1-9][\d.]* \|/m);
  const large = await flops('--arch', 'llava-1.5-7b', '--method', 'ficoco-v', '--budget', '64');
  assert.match(large.stdout, /^\| total TFLOPs \| 1\.\d{3} \| 8\.\d{3} \|/m);
  assert.match(large.stdout, /^\| layer \| tokens \(attention → MLP\) \| GFLOPs \|/m);
});
