import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { METHODS } from '../../src/reduction/registry';
import { runCli } from '../helpers/cli';

const ROOT = path.join(__dirname, '..', '..');
const IMAGE = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png');

/** Runs `ficoco ask …` and returns its exit code and stderr (it is expected to fail). */
async function askFails(...args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await runCli(['ask', ...args]);
  } catch (error) {
    const { code, stderr } = error as { code: number; stderr: string };
    return { code, stderr };
  }
  assert.fail(`ficoco ask ${args.join(' ')} succeeded`);
}

const cases: [string, string[], RegExp][] = [
  [
    'a folder as --image',
    ['--image', path.join(ROOT, 'bench'), 'q'],
    /^error: --image .*bench is a folder, not an image file\.$/,
  ],
  [
    'a missing --image',
    ['--image', path.join(ROOT, 'no-such.png'), 'q'],
    /^error: --image .*no-such\.png does not exist\.$/,
  ],
  [
    'a negative budget',
    ['--image', IMAGE, '--method', 'ficoco-v', '--budget', '-5', 'q'],
    /^error: --budget -5 must be a whole number of visual tokens .* or a share above 0 and up to 100%/,
  ],
  [
    'a budget above 100 %',
    ['--image', IMAGE, '--method', 'ficoco-v', '--budget', '150%', 'q'],
    /^error: --budget 150% must be a whole number of visual tokens/,
  ],
  [
    'a negative token limit',
    ['--image', IMAGE, '--max-new-tokens', '-1', 'q'],
    /^error: --max-new-tokens -1 is not a number ≥ 1\.$/,
  ],
  [
    'an unknown option',
    ['--image', IMAGE, '--bogus', 'q'],
    /^error: Unknown option '--bogus'\. See `ficoco ask --help`\.$/,
  ],
  [
    'a method without a budget',
    ['--image', IMAGE, '--method', 'tome', 'q'],
    /^error: --method tome needs --budget: e\.g\. --method ficoco-v --budget 64\.$/,
  ],
  [
    'a budget without a method',
    ['--image', IMAGE, '--budget', '64', 'q'],
    /^error: --budget needs --method NAME \(see `ficoco methods`\)\.$/,
  ],
  [
    'a budget with auto, which chooses its own',
    ['--image', IMAGE, '--method', 'auto', '--budget', '64', 'q'],
    /^error: --method auto chooses its own budget; leave out --budget\.$/,
  ],
  [
    "a budget above the model's visual tokens",
    ['--image', IMAGE, '--method', 'ficoco-v', '--budget', '500', 'q'],
    /^error: A budget of 500 visual tokens is more than the 144 this model gives an image, so nothing would be reduced/,
  ],
];

for (const [what, args, message] of cases) {
  test(`ficoco ask: ${what} gets one clear line and exit code 2`, async () => {
    const { code, stderr } = await askFails(...args);
    assert.equal(code, 2, stderr);
    assert.equal(stderr.trimEnd().split('\n').length, 1, `one line, got:\n${stderr}`);
    assert.match(stderr.trimEnd(), message);
  });
}

test('ficoco methods lists every method and its parameters; --verbose adds where each comes from', async () => {
  const methods = async (...args: string[]) => (await runCli(['methods', ...args])).stdout;
  const [plain, verbose] = await Promise.all([methods(), methods('--verbose')]);
  for (const method of METHODS) {
    assert.ok(plain.includes(`${method.name}\n  ${method.description}\n`), method.name);
    for (const param of Object.keys(method.params))
      assert.match(plain, new RegExp(`^    ${param} = `, 'm'), `${method.name}.${param}`);
    assert.ok(
      !plain.includes(method.reference) && verbose.includes(`  ${method.reference}\n`),
      `${method.name}'s reference only with --verbose`,
    );
  }
});
