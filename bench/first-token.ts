/**
 * Time to first token as a user waits for it. Cold: from starting `ficoco ask` in a fresh process (the built CLI)
 * to the first answer text on its stdout — Node's start, the model's load, the image, the prefill. Warm: from a
 * question to the first answer text on an engine already loaded (the chat's second question). Both without
 * reduction, on the built-in model and on TinyLLaVA shapes (random weights) with F32, int8 and int4 weights.
 *
 *   npm run build && node --import tsx bench/first-token.ts [--runs 5] > bench/results/first-token.md
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { machineLine, median } from '../src/cli/benchTiming';
import { WeightQuantization, quantizedParts } from '../src/common/quantization';
import { LlavaEngine } from '../src/engine/engine';
import { TINYLLAVA, randomModelDir, writeRandomModel } from './randomModel';
import { continueAsEngineProcess } from '../src/cli/engineProcess';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const runs = Number(values.runs);
const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const IMAGE = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000001.png');
const QUESTION = 'which box does the arrow point to ?';

/** GLIBC_TUNABLES as this script was started with, kept across its start again as an engine process ('' for none). */
const SHELL_TUNABLES = 'FICOCO_BENCH_SHELL_TUNABLES';

/** The environment a shell hands `ficoco ask`: without the huge pages this script's own start again added. */
function shellEnvironment(): NodeJS.ProcessEnv {
  const { [SHELL_TUNABLES]: tunables, GLIBC_TUNABLES: _engine, ...rest } = process.env;
  return tunables ? { ...rest, GLIBC_TUNABLES: tunables } : rest;
}

/** Milliseconds from spawning `ficoco ask` to the first byte of its answer on stdout. */
function coldFirstText(model: string, quantization: WeightQuantization): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(
      process.execPath,
      [
        CLI,
        'ask',
        '--model',
        model,
        '--image',
        IMAGE,
        '--method',
        'none',
        '--quantize',
        quantization,
        '--max-new-tokens',
        '8',
        QUESTION,
      ],
      // A large model's ask starts itself again with huge pages, as from a shell: that second start is waited for too.
      { env: shellEnvironment() },
    );
    let first: number | undefined;
    let errors = '';
    child.stdout.on('data', () => (first ??= performance.now() - started));
    child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 && first !== undefined ? resolve(first) : reject(new Error(`ficoco ask exited ${code}: ${errors}`)),
    );
  });
}

/** Time to first text of `runs` questions on one loaded engine (after one unmeasured question). */
async function warmFirstText(model: string, quantization: WeightQuantization): Promise<number[]> {
  const engine = await LlavaEngine.load(model, { quantization });
  const image = { bytes: fs.readFileSync(IMAGE), name: path.basename(IMAGE) };
  const times: number[] = [];
  try {
    for (let i = -1; i < runs; i++) {
      const answer = await engine.ask({ question: QUESTION, images: [image], maxNewTokens: 8 });
      if (i >= 0) times.push(answer.stats.ttftMs);
    }
  } finally {
    await engine.dispose();
  }
  return times;
}

async function main() {
  process.env[SHELL_TUNABLES] ??= process.env.GLIBC_TUNABLES ?? '';
  // The engine's process settings (V8's old-space floor, glibc's huge pages) take effect only at a start.
  await continueAsEngineProcess();
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const tinyLlava = writeRandomModel(TINYLLAVA, randomModelDir(TINYLLAVA), 'F32');
  const models: [string, string, WeightQuantization][] = [
    ['built-in (tiny-llava-screens, 2 M parameters)', path.join(ROOT, 'models', 'tiny-llava-screens'), 'none'],
    ['CLIP-L/336 + TinyLlama-1.1B shapes, F32', tinyLlava, 'none'],
    [`CLIP-L/336 + TinyLlama-1.1B shapes, ${quantizedParts('int8', true)}`, tinyLlava, 'int8'],
    [`CLIP-L/336 + TinyLlama-1.1B shapes, ${quantizedParts('int4', true)}`, tinyLlava, 'int4'],
  ];
  const rows: string[] = [];
  for (const [label, model, quantization] of models) {
    // One unmeasured cold start first: it builds a missing quantized cache and fills the page cache.
    await coldFirstText(model, quantization);
    const cold: number[] = [];
    for (let i = 0; i < runs; i++) cold.push(await coldFirstText(model, quantization));
    const warm = await warmFirstText(model, quantization);
    const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
    rows.push(
      `| ${label} | ${median(cold).toFixed(0)} (${range(cold)}) | ${median(warm).toFixed(0)} (${range(warm)}) |`,
    );
    process.stderr.write(`${rows[rows.length - 1]}\n`);
  }
  process.stdout.write(
    [
      '# Time to first token',
      '',
      `\`npm run build && node --import tsx bench/first-token.ts --runs ${runs}\``,
      '',
      `One ${path.basename(IMAGE)} screenshot and "${QUESTION}", no reduction, the engine's default threads. ` +
        'Cold: a fresh `node dist/cli.js ask` process, from its start to the first answer text on stdout (Node ' +
        'start, model load, image, prefill), after one unmeasured start; it starts without the huge pages this ' +
        "script's engine runs with, as from a shell, so a large model's ask starts itself again with them, and that " +
        'is timed too. Warm: from the question to the first answer ' +
        `text on a loaded engine (\`answer.stats.ttftMs\`), after one unmeasured question. Medians of ${runs}, ` +
        `ranges in brackets. ${machineLine()}`,
      '',
      '| model | cold ms | warm ms |',
      '|---|---:|---:|',
      ...rows,
      '',
    ].join('\n'),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
