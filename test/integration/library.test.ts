/**
 * The library as another project sees it: a project whose node_modules/ficoco-vision links to this repository, as
 * `npm install /path/to/the/clone` makes it, so 'ficoco-vision' resolves through package.json "exports" to the built
 * dist/index.js and dist/types. It runs README.md's example as it stands, and type-checks a TypeScript consumer and
 * its misuses against the declarations.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { LlavaEngine, METHODS, builtinModelFolder } from '../../src/index';
import { temporaryFolders } from '../helpers/tempFolders';

const execFileAsync = promisify(execFile);
const ROOT = path.join(__dirname, '..', '..');
const BUILT = ['dist/index.js', 'dist/types/index.d.ts'];
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const IMAGE = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png');
/** What README.md's example asks, and with which reduction: asked again in this process to compare. */
const QUESTION = 'which box does the arrow point to ?';
const REDUCTION = { method: 'ficoco-v', budget: { tokens: 16 } };
const RUN = { timeout: 120_000 };

const modelDir = builtinModelFolder();
const unbuilt = BUILT.filter((file) => !fs.existsSync(path.join(ROOT, file)));
const skip =
  unbuilt.length > 0
    ? `needs the library built (${unbuilt.join(', ')} missing): run npm run build`
    : modelDir === undefined && 'needs models/tiny-llava-screens (tools/train_tiny_llava.py)';

/** The fenced js block of README.md's "As a library" section, as it stands. */
function readmeExample(): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.split(/^## As a library$/m)[1]?.split(/^## /m)[0];
  const block = section && /^```js\n([\s\S]*?)^```$/m.exec(section);
  assert.ok(block, 'README.md has a "## As a library" section with a ```js block');
  return block[1];
}

describe('the library, installed in another project', { skip }, () => {
  const consumer = temporaryFolders()('ficoco-library-consumer-');
  fs.writeFileSync(path.join(consumer, 'package.json'), '{ "name": "consumer", "private": true }\n');
  fs.mkdirSync(path.join(consumer, 'node_modules', '@types'), { recursive: true });
  fs.symlinkSync(ROOT, path.join(consumer, 'node_modules', 'ficoco-vision'), 'junction');
  // The consumer's own Node types, as its project would have them.
  fs.symlinkSync(
    path.join(ROOT, 'node_modules', '@types', 'node'),
    path.join(consumer, 'node_modules', '@types', 'node'),
    'junction',
  );
  const node = (args: string[]) => execFileAsync(process.execPath, args, { cwd: consumer, ...RUN });

  test('require() gets the bundle through "exports", and nothing else of the package', async () => {
    const script = `
      const lib = require('ficoco-vision');
      let deep;
      try { require('ficoco-vision/dist/cli.js'); } catch (error) { deep = error.code; }
      console.log(JSON.stringify({
        resolved: require.resolve('ficoco-vision'),
        methods: lib.METHODS.map((m) => m.name),
        builtin: lib.builtinModelFolder(),
        version: require('ficoco-vision/package.json').version,
        deep,
      }));`;
    const { stdout } = await node(['-e', script]);
    const seen = JSON.parse(stdout) as Record<string, unknown>;
    assert.deepEqual(seen, {
      resolved: fs.realpathSync(path.join(ROOT, 'dist', 'index.js')),
      methods: METHODS.map((method) => method.name),
      builtin: fs.realpathSync(modelDir!),
      version: (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version,
      deep: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    });
  });

  test("README.md's example runs as it stands and answers as engine.ask does in this process", async () => {
    const example = readmeExample();
    assert.ok(
      example.includes(`question: '${QUESTION}'`) && example.includes("method: 'ficoco-v', budget: { tokens: 16 }"),
    );
    fs.writeFileSync(path.join(consumer, 'ask.mjs'), example);
    const { stdout } = await node(['ask.mjs', IMAGE]);

    const engine = await LlavaEngine.load(modelDir!);
    const answer = await engine
      .ask({ question: QUESTION, images: [{ bytes: fs.readFileSync(IMAGE), name: IMAGE }], reduction: REDUCTION })
      .finally(() => engine.dispose());
    const printed = /^([\s\S]*)\nvisual tokens (\d+) of (\d+), TTFT [\d.]+ ms\n$/.exec(stdout);
    assert.ok(printed, `the example printed the answer, then its visual tokens:\n${stdout}`);
    assert.equal(printed[1], answer.text);
    assert.ok(answer.text.trim().length > 0);
    assert.deepEqual(answer.stats.visualTokens, [{ original: 144, atDecoder: 16 }]);
    assert.deepEqual([Number(printed[2]), Number(printed[3])], [16, 144]);
  });

  test('a TypeScript consumer type-checks against dist/types under --strict, and its misuses do not', async () => {
    fs.writeFileSync(path.join(consumer, 'use.ts'), USE);
    fs.writeFileSync(path.join(consumer, 'misuse.ts'), MISUSE);
    const flags = ['--noEmit', '--strict', '--pretty', 'false', '--module', 'nodenext', '--target', 'es2022'];
    const checked = await node([TSC, ...flags, '--types', 'node', 'use.ts', 'misuse.ts']).then(
      () => '',
      (error: { stdout: string }) => error.stdout,
    );
    const errors = checked
      .split('\n')
      .filter((line) => / error TS\d+:/.test(line))
      .map((line) => /^(.*?)\((\d+),\d+\): error (TS\d+):/.exec(line)?.slice(1).join(' ') ?? line);
    // Every misuse line ends with the error it must cause, and nothing else fails: not use.ts, not the declarations.
    const expected = MISUSE.split('\n').flatMap((line, i) => {
      const code = / \/\/ (TS\d+)$/.exec(line)?.[1];
      return code ? [`misuse.ts ${i + 1} ${code}`] : [];
    });
    assert.ok(expected.length >= 5);
    assert.deepEqual(errors, expected, checked);
  });
});

/** What a tool would write: every public type in use, and none of them `any`. */
const USE = `import {
  FICOCO_ERROR_KINDS,
  FicocoError,
  LlavaEngine,
  METHODS,
  MODEL_PRESETS,
  builtinModelFolder,
  parseBudget,
  planDownload,
  type Answer,
  type AskRequest,
  type DownloadPlan,
  type EngineOptions,
  type ReductionRequest,
} from 'ficoco-vision';

type IsAny<T> = 0 extends 1 & T ? true : false;
type NotAny<T extends false> = T;
export type NoAny = [
  NotAny<IsAny<Answer>>,
  NotAny<IsAny<Answer['stats']['visualTokens'][number]['atDecoder']>>,
  NotAny<IsAny<AskRequest['reduction']>>,
  NotAny<IsAny<EngineOptions['provider']>>,
  NotAny<IsAny<Awaited<ReturnType<typeof LlavaEngine.load>>>>,
  NotAny<IsAny<(typeof METHODS)[number]['params'][string]>>,
  NotAny<IsAny<FicocoError['kind']>>,
  NotAny<IsAny<DownloadPlan['files'][number]>>,
];

export async function describeImage(image: Uint8Array, signal: AbortSignal): Promise<string> {
  const folder = builtinModelFolder();
  if (folder === undefined) throw new Error('no built-in model');
  const engine: LlavaEngine = await LlavaEngine.load(folder, { provider: 'cpu', threads: 1, quantization: 'none' });
  const budget = parseBudget('25%');
  const reduction: ReductionRequest = budget ? { method: METHODS[0].name, budget } : { method: 'auto' };
  try {
    await engine.warmUp(reduction);
    const answer: Answer = await engine.ask({
      question: 'what does the dialog say?',
      images: [{ bytes: image, name: 'shot.png' }],
      history: [{ role: 'user', content: 'hello' }],
      maxNewTokens: 64,
      sampling: { temperature: 0, topP: 1, seed: 0 },
      reduction,
      signal,
      onText: (text: string) => process.stdout.write(text),
      onProgress: ({ stage, done, total }) => console.log(stage, done, total),
    });
    const kept: number = answer.stats.visualTokens[0].atDecoder;
    return \`\${answer.text} (\${kept} tokens, \${answer.stopReason}, \${engine.provider})\`;
  } catch (error) {
    if (error instanceof FicocoError && error.kind === 'cancelled') return '';
    throw error;
  } finally {
    await engine.dispose();
  }
}

export const kinds: readonly string[] = FICOCO_ERROR_KINDS;
export const presets: string[] = MODEL_PRESETS.filter((preset) => preset.hub).map((preset) => preset.id);
export const plan: (root: string) => Promise<DownloadPlan> = (root) =>
  planDownload({ repo: 'llava-hf/llava-1.5-7b-hf', revision: 'main', endpoint: 'https://huggingface.co', root });
`;

/** Mistakes the declarations must catch, each line ending with the error it causes. */
const MISUSE = `import { FicocoError, LlavaEngine } from 'ficoco-vision';

export async function misuse(image: Uint8Array): Promise<void> {
  const engine = await LlavaEngine.load('model', {
    provider: 'gpu', // TS2322
  });
  await engine.ask({
    question: 'what is this?',
    images: [{ bytes: image, name: 'a.png' }],
    reducton: { method: 'ficoco-v', budget: { tokens: 16 } }, // TS2561
  });
  await engine.ask({ question: 'q', images: [], reduction: { method: 'ficoco-v', budget: 16 } }); // TS2322
  await engine.ask({ question: 'q', images: [], hooks: [] }); // TS2353
  engine.text.encode('internal'); // TS2339
  try {
    await engine.dispose();
  } catch (error) {
    if (error instanceof FicocoError && error.kind === 'canceled') return; // TS2367
  }
}
`;
