import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'node:test';
import type { EngineClient } from '../../src/client/engineClient';
import { METHODS } from '../../src/reduction/registry';
import { WorkerPool } from '../../src/server/workerPool';
import { runCli } from '../helpers/cli';
import { temporaryFolders } from '../helpers/tempFolders';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'src', 'cli', 'main.ts');
const IMAGE = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const EVAL_SET = path.join(ROOT, 'bench', 'eval-set', 'data.jsonl');

const temporaryFolder = temporaryFolders();
// A folder without config.json: a command that loads it fails, so an option checked first is what these tests see.
const NOT_A_MODEL = temporaryFolder('ficoco-cli-not-a-model-');
const DATA = temporaryFolder('ficoco-cli-data-');
/** An evaluation set of these lines in DATA. */
function dataFile(name: string, ...lines: string[]): string {
  const file = path.join(DATA, name);
  fs.writeFileSync(file, lines.map((line) => `${line}\n`).join(''));
  return file;
}

/** `ficoco ARGS` from source, with its exit code and output; a run that hangs is killed after a minute (code null). */
function ficoco(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', CLI, ...args],
      { cwd: ROOT, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs `ficoco ask …` and returns its exit code and stderr (it is expected to fail). */
async function askFails(...args: string[]): Promise<{ code: number | null; stderr: string }> {
  const { code, stderr } = await ficoco(['ask', ...args]);
  assert.notEqual(code, 0, `ficoco ask ${args.join(' ')} succeeded`);
  return { code, stderr };
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
    /^error: --budget -5 must be a whole number of visual tokens, 1 or more .* or a share above 0 and up to 100%/,
  ],
  // 0 is a whole number: the message says the least a count may be.
  [
    'a budget of 0',
    ['--image', IMAGE, '--method', 'ficoco-v', '--budget', '0', 'q'],
    /^error: --budget 0 must be a whole number of visual tokens, 1 or more \(e\.g\. 64\), or a share above 0/,
  ],
  [
    'a budget above 100 %',
    ['--image', IMAGE, '--method', 'ficoco-v', '--budget', '150%', 'q'],
    /^error: --budget 150% must be a whole number of visual tokens/,
  ],
  [
    'a negative token limit',
    ['--image', IMAGE, '--max-new-tokens', '-1', 'q'],
    /^error: --max-new-tokens -1 is not a number from 1 to 4096\.$/,
  ],
  [
    'an unknown option',
    ['--image', IMAGE, '--bogus', 'q'],
    /^error: unknown option '--bogus'\. See `ficoco ask --help`\.$/,
  ],
  [
    'an option without its value',
    ['--image'],
    /^error: option '--image <value>' argument missing\. See `ficoco ask --help`\.$/,
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
    /^error: --method auto chooses its own budget and parameters: leave out --budget and --param\.$/,
  ],
  [
    'a parameter without a method',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--param', 'penalty=1', 'q'],
    /^error: --param needs --method NAME \(see `ficoco methods`\)\.$/,
  ],
  [
    'a parameter with none, which uses none',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--method', 'none', '--param', 'penalty=1', 'q'],
    /^error: --method none keeps every visual token: leave out --budget and --param\.$/,
  ],
  [
    'a parameter with auto, which chooses its own',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--method', 'auto', '--param', 'penalty=1', 'q'],
    /^error: --method auto chooses its own budget and parameters: leave out --budget and --param\.$/,
  ],
  // The chat and the server refuse a ninth image too.
  [
    'more images than a question takes',
    ['--model', NOT_A_MODEL, ...Array.from({ length: 9 }, () => ['--image', IMAGE]).flat(), 'q'],
    /^error: 9 --image files given; a question takes at most 8: ask about fewer at once\.$/,
  ],
  // Refused before the model loads (the folder here is not a model): a large one takes minutes.
  [
    'an unknown method',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--method', 'ficoco-x', '--budget', '16', 'q'],
    /^error: --method ficoco-x is not a reduction method: use auto, none or one of ficoco-v, .*, pooling \(`ficoco methods` says what each does\)\.$/,
  ],
  // The README writes FiCoCo-V; the name to type is the one it resembles.
  [
    'a method named as the README writes it',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--method', 'FiCoCo-V', '--budget', '16', 'q'],
    /^error: --method FiCoCo-V is not a reduction method: did you mean --method ficoco-v\?$/,
  ],
  [
    'auto in capitals',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--method', 'Auto', 'q'],
    /^error: --method Auto is not a reduction method: did you mean --method auto\?$/,
  ],
  [
    'an unknown method without a budget: the name is what is wrong',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--method', 'ficocov', 'q'],
    /^error: --method ficocov is not a reduction method/,
  ],
  [
    'a parameter the method lacks',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--method', 'ficoco-v', '--budget', '16', '--param', 'foo=1', 'q'],
    /^error: ficoco-v has no parameter "foo"; its parameters are /,
  ],
  [
    'a text file named .png',
    ['--model', NOT_A_MODEL, '--image', path.join(ROOT, 'test', 'fixtures', 'preprocess', 'notes.png'), 'q'],
    /^error: notes\.png is not an image: supported formats are PNG, JPEG, WebP, GIF\.$/,
  ],
  // Said as a command line's mistake: where the question goes, not the chat's "type what you want to know".
  [
    'no question',
    ['--model', NOT_A_MODEL, '--image', IMAGE],
    /^error: no question given: put it last, in quotes: ficoco ask --image FILE "what does the dialog say\?"$/,
  ],
  [
    'an empty question',
    ['--model', NOT_A_MODEL, '--image', IMAGE, ' '],
    /^error: no question given: put it last, in quotes: /,
  ],
  [
    'a --model that is not there',
    ['--model', path.join(ROOT, 'no-such-model'), '--image', IMAGE, 'q'],
    /^error: --model .*no-such-model does not exist\.$/,
  ],
  // Each started by ONNX Runtime: 100,000 of them took the machine down.
  [
    'too many threads',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--threads', '300', 'q'],
    /^error: --threads 300 is not a number from 1 to 256\.$/,
  ],
  // The engine protocol's bounds, which the extension and serve keep.
  [
    'a top-p of 0',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--top-p', '0', 'q'],
    /^error: --top-p 0 keeps no token to sample/,
  ],
  [
    'a top-p above 1',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--top-p', '1.5', 'q'],
    /^error: --top-p 1\.5 is not a number from 0 to 1\.$/,
  ],
  [
    'a top-k that is not a whole number',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--top-k', '2.5', 'q'],
    /^error: --top-k 2\.5 is not a whole number\.$/,
  ],
  [
    'a min-p above 1',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--min-p', '1.5', 'q'],
    /^error: --min-p 1\.5 is not a number from 0 to 1\.$/,
  ],
  [
    'a repetition penalty of 0',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--repetition-penalty', '0', 'q'],
    /^error: --repetition-penalty 0 divides by zero/,
  ],
  [
    'a temperature above 100',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--temperature', '101', 'q'],
    /^error: --temperature 101 is not a number from 0 to 100\.$/,
  ],
  [
    'a seed above 2^32 - 1',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--seed', '4294967296', 'q'],
    /^error: --seed 4294967296 is not a number from 0 to 4294967295\.$/,
  ],
  [
    'more new tokens than 4096',
    ['--model', NOT_A_MODEL, '--image', IMAGE, '--max-new-tokens', '4097', 'q'],
    /^error: --max-new-tokens 4097 is not a number from 1 to 4096\.$/,
  ],
  // A device or a FIFO is not a folder, and reading one may never end.
  ...(process.platform === 'win32'
    ? []
    : [
        [
          'a device as --image',
          ['--image', '/dev/zero', 'q'],
          /^error: --image \/dev\/zero is not a regular file\.$/,
        ] as [string, string[], RegExp],
      ]),
  [
    "a budget above the model's visual tokens",
    ['--image', IMAGE, '--method', 'ficoco-v', '--budget', '500', 'q'],
    // The engine's words (the chat's) say to turn reduction off; here, with the option that does.
    /^error: a budget of 500 visual tokens is more than the 144 this model gives an image, so nothing would be reduced; keep at most 144, or turn reduction off with --method none\.$/,
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

const commandCases: [string, string[], RegExp][] = [
  ...['bench', 'serve'].map((command): [string, string[], RegExp] => [
    `${command}: too many threads`,
    [command, '--model', NOT_A_MODEL, '--threads', '300'],
    /^error: --threads 300 is not a number from 1 to 256\.$/,
  ]),
  [
    'tune: --keep 0, which any accuracy passes',
    ['tune', '--model', NOT_A_MODEL, '--data', EVAL_SET, '--keep', '0'],
    /^error: --keep 0 accepts any accuracy, so tune would choose the fastest method whatever it answers: /,
  ],
  [
    'tune: too many threads',
    ['tune', '--model', NOT_A_MODEL, '--data', EVAL_SET, '--threads', '300'],
    /^error: --threads 300 is not a number from 1 to 256\.$/,
  ],
  [
    'eval: a data line that is null',
    ['eval', '--model', NOT_A_MODEL, '--data', dataFile('null.jsonl', 'null')],
    /^error: .*null\.jsonl line 1 is not a JSON object\.$/,
  ],
  [
    'eval: a folder as --data',
    ['eval', '--model', NOT_A_MODEL, '--data', DATA],
    /^error: .* is not a file; --data needs a JSONL evaluation set\.$/,
  ],
  [
    'eval: a data line naming a missing image',
    [
      'eval',
      '--model',
      NOT_A_MODEL,
      '--data',
      dataFile('missing.jsonl', '', JSON.stringify({ image: 'nope.png', question: 'q', answer: 'a' })),
    ],
    /^error: .*missing\.jsonl line 2: image .*nope\.png does not exist\.$/,
  ],
  [
    'tune: a data line naming a folder as its image',
    [
      'tune',
      '--model',
      NOT_A_MODEL,
      '--data',
      dataFile('folder.jsonl', JSON.stringify({ image: '.', question: 'q', answer: 'a' })),
    ],
    /^error: .*folder\.jsonl line 1: image .* is a folder, not an image file\.$/,
  ],
  [
    'eval: a data line whose answer has no word to match',
    [
      'eval',
      '--model',
      NOT_A_MODEL,
      '--data',
      dataFile('no-word.jsonl', JSON.stringify({ image: IMAGE, question: 'q', answer: ' ?' })),
    ],
    /^error: .*no-word\.jsonl line 1 has the answer " \?", without a letter or digit: no answer could match it\.$/,
  ],
  [
    'tune: a data line whose image is not an image',
    [
      'tune',
      '--model',
      NOT_A_MODEL,
      '--data',
      dataFile(
        'not-an-image.jsonl',
        JSON.stringify({ image: IMAGE, question: 'q', answer: 'a' }),
        JSON.stringify({ image: 'no-word.jsonl', question: 'q', answer: 'a' }),
      ),
    ],
    /^error: .*not-an-image\.jsonl line 2: image .*no-word\.jsonl is not an image: supported formats are PNG, /,
  ],
  // A required option left out is one line, not the line and the whole usage.
  ...['eval', 'tune'].map((command): [string, string[], RegExp] => [
    `${command}: no --data`,
    [command, '--model', NOT_A_MODEL],
    new RegExp(
      `^error: --data FILE\\.jsonl is required: the questions and answers to score \\(see \`ficoco ${command} --help\`\\)\\.$`,
    ),
  ]),
  [
    'reduce: no --input',
    ['reduce', '--method', 'ficoco-v', '--budget', '4', '--output', path.join(DATA, 'out.safetensors')],
    /^error: --input is required \(see `ficoco reduce --help`\)\.$/,
  ],
  [
    'eval: an empty data set',
    ['eval', '--model', NOT_A_MODEL, '--data', dataFile('empty.jsonl')],
    /^error: .*empty\.jsonl has no items\.$/,
  ],
  ...['eval', 'bench'].flatMap((command): [string, string[], RegExp][] => {
    const data = command === 'eval' ? ['--data', EVAL_SET] : [];
    return [
      [
        `${command}: a file as --out`,
        [command, '--model', NOT_A_MODEL, ...data, '--out', EVAL_SET],
        /^error: --out .*data\.jsonl is not a folder\.$/,
      ],
      [
        `${command}: a --name with a folder`,
        [command, '--model', NOT_A_MODEL, ...data, '--name', 'x/y'],
        /^error: --name x\/y must be a file name without a folder/,
      ],
    ];
  }),
  // A list with a setting twice, an empty entry or a name no method has: refused before the model loads, not run twice
  // or stopped on after the settings before it were measured.
  [
    'bench: an unknown method after a known one',
    ['bench', '--model', NOT_A_MODEL, '--methods', 'ficoco-v,nosuch'],
    /^error: unknown reduction method "nosuch"; available: ficoco-v, /,
  ],
  [
    'eval: a method with an underscore for its hyphen',
    ['eval', '--model', NOT_A_MODEL, '--data', EVAL_SET, '--methods', 'tome,ficoco_v'],
    /^error: unknown reduction method "ficoco_v"; did you mean "ficoco-v"\?$/,
  ],
  [
    'bench: a budget twice',
    ['bench', '--model', NOT_A_MODEL, '--budgets', '16, 16'],
    /^error: --budgets 16, 16 names 16 twice: give each once\.$/,
  ],
  [
    'eval: one budget in two spellings',
    ['eval', '--model', NOT_A_MODEL, '--data', EVAL_SET, '--budgets', '25%,0.25'],
    /^error: --budgets 25%,0\.25 names the same one twice \(25% and 0\.25\): give each once\.$/,
  ],
  ...[
    ['llava-1.5-7b', 'an image', 576],
    ['llava-next-mistral-7b', 'a 1920 × 1080 image', 1920],
  ].map(([arch, image, tokens]): [string, string[], RegExp] => [
    `flops: a budget above ${arch}'s visual tokens`,
    ['flops', '--arch', String(arch), '--method', 'ficoco-v', '--budget', '100000'],
    new RegExp(
      `^error: a budget of 100000 visual tokens is more than the ${tokens} this model gives ${image}, so nothing would ` +
        `be reduced; keep at most ${tokens}, or turn reduction off with --method none\\.$`,
    ),
  ]),
  [
    'flops: a budget twice',
    ['flops', '--arch', 'llava-1.5-7b', '--budgets', '64,32,64'],
    /^error: --budgets 64,32,64 names 64 twice: give each once\.$/,
  ],
  [
    'flops: an empty entry in --budgets',
    ['flops', '--arch', 'llava-1.5-7b', '--budgets', '64,,32'],
    /^error: --budgets 64,,32 has an empty entry: separate them with one comma\.$/,
  ],
  // A wrong entry of a budget list is named with the option it came from, not the one-budget option.
  ...[
    ['bench', '--model', NOT_A_MODEL],
    ['eval', '--model', NOT_A_MODEL, '--data', EVAL_SET],
    ['tune', '--model', NOT_A_MODEL, '--data', EVAL_SET],
    ['flops', '--arch', 'llava-1.5-7b'],
  ].map((args): [string, string[], RegExp] => [
    `${args[0]}: a wrong entry in --budgets`,
    [...args, '--budgets', '12,lots'],
    /^error: --budgets lots must be a whole number of visual tokens, 1 or more \(e\.g\. 64\), or a share above 0/,
  ]),
  [
    'eval: a method twice',
    ['eval', '--model', NOT_A_MODEL, '--data', EVAL_SET, '--methods', 'tome,fastv,tome'],
    /^error: --methods tome,fastv,tome names tome twice: give each once\.$/,
  ],
  [
    'tune: an empty entry in --methods',
    ['tune', '--model', NOT_A_MODEL, '--data', EVAL_SET, '--methods', 'fastv,,tome'],
    /^error: --methods fastv,,tome has an empty entry: separate them with one comma\.$/,
  ],
  // Before anything is fetched: a download needs a model, and a mistyped preset is not sent to the Hub.
  [
    'models download: no model',
    ['models', 'download', '--dir', DATA],
    /^error: ficoco models download needs a model: a preset \(tiny-llava-1\.5b, llava-onevision-0\.5b, .*\) or a Hub repository OWNER\/NAME\[@REV\]\.$/,
  ],
  [
    'models download: a mistyped preset',
    ['models', 'download', 'llava-1.5-7bb', '--dir', DATA],
    /^error: "llava-1\.5-7bb" is neither a preset \(tiny-llava-1\.5b, .*llava-1\.5-7b, .*\) nor a Hub repository OWNER\/NAME\.$/,
  ],
  // Every message starts as the command line's own do, in lower case, and is one line: not the line and the usage.
  [
    'methods: an argument it does not take',
    ['methods', 'extra'],
    /^error: unexpected argument 'extra'\. See `ficoco methods --help`\.$/,
  ],
  [
    'flops: an unknown architecture',
    ['flops', '--arch', 'llava-9b'],
    /^error: unknown architecture "llava-9b"; known: llava-1\.5-7b, /,
  ],
  ...['models', 'providers'].map((command): [string, string[], RegExp] => [
    `${command}: an action it does not have`,
    [command, 'bogus'],
    new RegExp(`^error: ficoco ${command} bogus: expected nothing.* See \`ficoco ${command} --help\`\\.$`),
  ]),
  [
    'serve: a --host that is not this machine',
    ['serve', '--model', NOT_A_MODEL, '--host', '192.0.2.1', '--port', '0', '--api-key', 'k'],
    /^error: --host 192\.0\.2\.1 is not an address of this machine\.$/,
  ],
];

/** Runs `ficoco ARGS`, which must refuse with `message` alone: exit code 2, one line on stderr, nothing on stdout. */
async function refusedInOneLine(args: readonly string[], message: RegExp): Promise<void> {
  const { code, stdout, stderr } = await ficoco(args);
  assert.equal(code, 2, stderr);
  assert.equal(stdout, '');
  assert.equal(stderr.trimEnd().split('\n').length, 1, `one line, got:\n${stderr}`);
  assert.match(stderr.trimEnd(), message);
}

for (const [what, args, message] of commandCases) {
  test(`ficoco ${what} gets one clear line and exit code 2 before anything loads`, () =>
    refusedInOneLine(args, message));
}

// A budget list has no reduction to turn off (the unreduced model is measured anyway): the refusal says which
// budgets the image allows. On the built-in model, after it loads and before the first run.
const budgetListCases: [string[], number, string][] = [
  [['bench', '--runs', '1', '--out', DATA], 144, 'an image'],
  [['eval', '--data', EVAL_SET, '--limit', '1', '--out', DATA], 144, 'an image'],
  [['tune', '--data', EVAL_SET, '--limit', '1', '--out', path.join(DATA, 'tuned.json')], 144, 'an image'],
  [['flops', '--arch', 'llava-1.5-7b'], 576, 'an image'],
  [['flops', '--arch', 'llava-next-mistral-7b'], 1948, 'a 1920 × 1080 image'],
];
for (const [args, tokens, image] of budgetListCases) {
  const command = args[0] === 'flops' ? args.join(' ') : args[0];
  test(`ficoco ${command}: --budgets above the image's ${tokens} visual tokens names the budgets that fit`, () =>
    refusedInOneLine(
      [...args, '--budgets', `64,${tokens + 1}`],
      new RegExp(
        `^error: --budgets ${tokens + 1} is more than the ${tokens} visual tokens this model gives ${image}: ` +
          `give budgets of at most ${tokens}, or shares such as 25%\\.$`,
      ),
    ));
}

test('ficoco serve on a folder that is not a model says so in one line and exits, leaving no engine behind', async () => {
  const { code, stderr } = await ficoco(['serve', '--model', NOT_A_MODEL, '--port', '0']);
  assert.notEqual(code, null, `still running after a minute:\n${stderr}`);
  assert.equal(code, 2, stderr);
  assert.match(stderr, /^error: .* is not a model folder: config\.json is missing/m);
  assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace');
  const pid = /engine process (\d+) started/.exec(stderr)?.[1];
  assert.ok(pid, stderr);
  assert.throws(() => process.kill(Number(pid), 0), /ESRCH/, 'the engine process has ended');
});

test("serve's workers: a load that fails ends every engine process started, its own included", async () => {
  const disposed: number[] = [];
  let made = 0;
  const pool = new WorkerPool({
    workers: 3,
    queueLimit: 0,
    model: () => ({ modelDir: NOT_A_MODEL, provider: 'cpu' }),
    log: () => undefined,
    freeMemory: () => Infinity,
    newClient: () => {
      const id = made++;
      const client: Pick<EngineClient, 'load' | 'dispose' | 'processId'> = {
        processId: undefined,
        load: async () => {
          if (id === 1) throw new Error('the second worker cannot load');
          return { provider: 'cpu', modelDir: NOT_A_MODEL };
        },
        dispose: () => void disposed.push(id),
      };
      return client as EngineClient;
    },
  });
  await assert.rejects(pool.start(), /the second worker cannot load/);
  assert.deepEqual(disposed.sort(), [0, 1]);
});

test('ficoco serve on a port in use says so in one line', async () => {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = taken.address() as net.AddressInfo;
    const { code, stderr } = await ficoco(['serve', '--model', NOT_A_MODEL, '--port', String(port)]);
    assert.equal(code, 2, stderr);
    assert.match(stderr, new RegExp(`^error: --port ${port} on 127\\.0\\.0\\.1 is in use; pick another port`));
    assert.equal(stderr.trimEnd().split('\n').length, 1, stderr);
  } finally {
    taken.close();
  }
});

test('help goes to stdout with exit code 0, for ficoco and each command, as --help, -h or help', async () => {
  for (const args of [['--help'], ['-h'], ['help'], ['methods', '--help'], ['ask', '-h'], ['flops', '-h']]) {
    const { code, stdout, stderr } = await ficoco(args);
    assert.equal(code, 0, `${args.join(' ')}: ${stderr}`);
    assert.equal(stderr, '', args.join(' '));
    assert.match(stdout, /^Usage:\n {2}ficoco /, args.join(' '));
  }
  // Nothing to do is a usage error: the overview, on stderr, with the exit code of the others.
  const nothing = await ficoco([]);
  assert.equal(nothing.code, 2);
  assert.equal(nothing.stdout, '');
  assert.equal(nothing.stderr, (await ficoco(['--help'])).stdout);
  const unknown = await ficoco(['bogus']);
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stdout, '');
  assert.equal(
    unknown.stderr,
    'error: unknown command "bogus"; the commands are ask, methods, flops, reduce, eval, bench, tune, models, ' +
      'providers, serve. See `ficoco --help`.\n',
  );
});

// One rule for every message the command line prints: it starts in lower case after "error:", whether the words
// are its own or the engine's (a sentence in the chat); an acronym, a name or a file the user named keeps its case.
test("ficoco starts its own errors and the engine's in lower case, and keeps a file's name as it is", async () => {
  const longQuestion = Array(600).fill('word').join(' ');
  const engine = await askFails('--image', IMAGE, longQuestion);
  assert.match(
    engine.stderr,
    /^error: the question and its 1 image\(s\) make a \d+-token prompt, and this model reads/,
  );
  const own = await askFails('--image', IMAGE, '--bogus', 'q');
  assert.match(own.stderr, /^error: unknown option '--bogus'\./);
  const screenshot = path.join(DATA, 'Screenshot 1.png');
  fs.writeFileSync(screenshot, 'not an image');
  const named = await askFails('--image', screenshot, 'q');
  assert.match(
    named.stderr.trimEnd(),
    /^error: Screenshot 1\.png is not an image: supported formats are PNG, JPEG, WebP, GIF\.$/,
  );
});

test("ficoco --help lists the commands first; a command's help, asked either way, is its usage alone", async () => {
  const overview = (await ficoco(['--help'])).stdout;
  assert.match(overview, /^Usage:\n {2}ficoco COMMAND \[options\]\n\nCommands:\n {2}ask {8}\S/);
  assert.ok(overview.split('\n').length <= 25, overview);
  const { code, stdout, stderr } = await ficoco(['help', 'ask']);
  assert.equal(code, 0, stderr);
  assert.equal(stdout, (await ficoco(['ask', '--help'])).stdout);
  assert.match(stdout, /^Usage:\n {2}ficoco ask /);
  assert.match(stdout, /--top-k K .*\n {2}--min-p P .*\n {2}--repetition-penalty R\n/);
  assert.doesNotMatch(stdout, /^ {2}ficoco (?!ask )/m, "no other command's usage");
  const unknown = await ficoco(['help', 'bogus']);
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stdout, '');
  assert.match(unknown.stderr, /^error: unknown command "bogus"; the commands are ask, /);
});

test("ficoco ask's stats say whose tokens each step reduced when it has several images", async () => {
  const images = ['shapes.png', 'diagram.png'].flatMap((name) => ['--image', path.join(FIXTURES, 'images', name)]);
  const ask = async (method: string) => {
    const args = ['ask', '--model', path.join(FIXTURES, 'tiny-llava-llama'), ...images, '--method', method];
    const { stdout } = await runCli([...args, '--budget', '1', '--max-new-tokens', '1', 'what is it ?']);
    return stdout.split('\n').filter((line) => line.startsWith('step '));
  };
  // FiCoCo-V reduces in the vision tower, an image at a time; FastV in the decoder, all the images' tokens together.
  assert.deepEqual(
    (await ask('ficoco-v')).map((line) => line.replace(/ \([\d.]+ ms\)$/, '')),
    ['step vision:2   image 1    36 → 1 visual token', 'step vision:2   image 2    36 → 1 visual token'],
  );
  assert.deepEqual(
    (await ask('fastv')).map((line) => line.replace(/ \([\d.]+ ms\)$/, '')),
    ['step llm:0      all images 72 → 2 visual tokens'],
  );
});

test('ficoco --version, -V or version prints the package version on stdout', async () => {
  const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const args of [['--version'], ['-V'], ['version']]) {
    const { code, stdout, stderr } = await ficoco(args);
    assert.equal(code, 0, `${args.join(' ')}: ${stderr}`);
    assert.equal(stdout, `${version}\n`, args.join(' '));
    assert.equal(stderr, '', args.join(' '));
  }
});

test('ficoco methods lists every method and its parameters; --verbose adds where each comes from', async () => {
  const methods = async (...args: string[]) => (await runCli(['methods', ...args])).stdout;
  const [plain, verbose] = await Promise.all([methods(), methods('--verbose')]);
  for (const method of METHODS) {
    assert.ok(plain.includes(`${method.name}\n  ${method.description}\n`), method.name);
    for (const param of Object.keys(method.params))
      assert.match(plain, new RegExp(`^    ${param} = `, 'm'), `${method.name}.${param}`);
    // A list parameter's empty default is shown, not left blank.
    if ('schedule' in method.params)
      assert.match(plain, /^ {4}schedule = "" {2}\(numbers ≥ 0, comma-separated\) {2}Shares /m);
    assert.ok(
      !plain.includes(method.reference) && verbose.includes(`  ${method.reference}\n`),
      `${method.name}'s reference only with --verbose`,
    );
  }
});
