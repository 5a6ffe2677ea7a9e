/**
 * How fast Stop acts on a long answer, through the real engine process (dist/host.js forked by the extension's
 * EngineClient): LLaVA-OneVision-0.5B's shapes with random weights (bench/randomModel.ts) reading a 1920 × 1080
 * screenshot, stopped while the tower reads the image, while the decoder reads the prompt, and while the answer
 * streams. Each stop is timed from the cancel to the ask's end, and the process must be the same one after it (the
 * extension ends an engine that has not stopped within its grace, 3 s or twice the answer's slowest run so far). Run
 * `npm run build` first (npm run bench:stop does).
 *
 *   node --import tsx bench/stop-latency.ts [--quantize int8|int4|none] [--rounds 3]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { median } from '../src/cli/benchTiming';
import { type AnswerListeners, type AskOptions, EngineClient, EngineError } from '../src/client/engineClient';
import type { PrefillProgress } from '../src/common/prefillProgress';
import { WEIGHT_QUANTIZATIONS, type WeightQuantization } from '../src/common/quantization';
import type { LoadParams } from '../src/protocol/engine';
import { screenshotPng } from '../tools/screenshotPng';
import { ONEVISION_05B, randomModelDir, writeRandomModel } from './randomModel';

const { values } = parseArgs({
  options: { quantize: { type: 'string', default: 'int8' }, rounds: { type: 'string', default: '3' } },
});
const HOST = path.resolve(__dirname, '..', 'dist', 'host.js');

/**
 * Where a stop lands: `delayMs` after the first progress that `reached` accepts. (Random weights may answer with
 * tokens that decode to no text, so the answer's stop waits from the prompt's end instead of its first text.)
 */
const STOP_POINTS: { name: string; reached: (progress: PrefillProgress) => boolean; delayMs: number }[] = [
  {
    name: 'reading the image (after a quarter of its parts)',
    reached: ({ stage, done, total }) => stage === 'image' && done >= total / 4,
    delayMs: 0,
  },
  {
    name: 'reading the prompt (past half of it)',
    reached: ({ stage, done, total }) => stage === 'prompt' && done >= total / 2,
    delayMs: 0,
  },
  {
    name: 'writing the answer (0.3 s after the prompt was read)',
    reached: ({ stage, done, total }) => stage === 'prompt' && done === total,
    delayMs: 300,
  },
];

interface Stopped {
  settledMs: number;
  outcome: string;
  sameProcess: boolean;
}

async function main() {
  if (!fs.existsSync(HOST)) throw new Error(`needs ${HOST}: run npm run build`);
  const quantization = values.quantize as WeightQuantization;
  if (!WEIGHT_QUANTIZATIONS.includes(quantization)) throw new Error(`--quantize: one of ${WEIGHT_QUANTIZATIONS}`);
  const rounds = Number(values.rounds);
  const model: LoadParams = {
    modelDir: writeRandomModel(ONEVISION_05B, randomModelDir(ONEVISION_05B), 'F32'),
    provider: 'cpu',
    quantization,
  };
  const question: AskOptions = {
    question: 'what does the dialog say ?',
    images: [{ name: 'screenshot.png', dataBase64: screenshotPng(1920, 1080).toString('base64') }],
    maxNewTokens: 64,
    temperature: 0,
    topP: 1,
    seed: 0,
  };
  const client = new EngineClient({ hostModule: HOST });
  const quiet: AnswerListeners = { text: () => undefined };
  try {
    let started = performance.now();
    await client.ask(model, question, quiet);
    const firstMs = performance.now() - started;
    const answers: number[] = [];
    const stops = STOP_POINTS.map(() => [] as Stopped[]);
    for (let round = 0; round < rounds; round++) {
      started = performance.now();
      await client.ask(model, question, quiet);
      answers.push(performance.now() - started);
      for (const [i, point] of STOP_POINTS.entries()) stops[i].push(await stopAt(client, model, question, point));
    }
    const seconds = (ms: number) => (ms / 1000).toFixed(1);
    const lines = [
      '# Stop on a long answer',
      '',
      `LLaVA-OneVision-0.5B shapes (SigLIP-so400m/384 + Qwen2-0.5B), random weights, ${quantization === 'none' ? 'F32' : quantization}, ` +
        `CPU provider, ${os.availableParallelism()} cores (${os.cpus()[0]?.model.trim() ?? 'unknown CPU'}); a 1920 × 1080 ` +
        `screenshot, no reduction, ${question.maxNewTokens} new tokens; engine process dist/host.js through ` +
        `EngineClient; ${rounds} rounds; ${new Date().toISOString().slice(0, 10)}. \`npm run bench:stop\`.`,
      '',
      `A whole answer took ${seconds(median(answers))} s (median; ${answers.map(seconds).join(', ')}); the first, ` +
        `with the model's load, ${seconds(firstMs)} s.`,
      '',
      '| stopped while | cancel → ask ended, median | runs (ms) | how it ended | same engine process |',
      '|---|---:|---|---|---|',
      ...STOP_POINTS.map((point, i) => {
        const runs = stops[i];
        return (
          `| ${point.name} | ${median(runs.map((run) => run.settledMs)).toFixed(0)} ms | ` +
          `${runs.map((run) => run.settledMs.toFixed(0)).join(', ')} | ${[...new Set(runs.map((run) => run.outcome))].join('; ')} | ` +
          `${runs.every((run) => run.sameProcess) ? 'yes' : 'no'} |`
        );
      }),
      '',
    ];
    process.stdout.write(lines.join('\n'));
  } finally {
    client.dispose();
  }
}

/** One ask, cancelled at `point`; timed from the cancel to the ask's end. */
async function stopAt(
  client: EngineClient,
  model: LoadParams,
  question: AskOptions,
  point: (typeof STOP_POINTS)[number],
): Promise<Stopped> {
  const source = new CancellationTokenSource();
  const processId = client.processId;
  let reached = false;
  let cancelledAt: number | undefined;
  const progress = (event: PrefillProgress) => {
    if (reached || !point.reached(event)) return;
    reached = true;
    setTimeout(() => {
      cancelledAt = performance.now();
      source.cancel();
    }, point.delayMs);
  };
  const outcome = await client.ask(model, question, { text: () => undefined, progress }, source.token).then(
    (answer) => `answered, ${answer.stopReason}`,
    (error: unknown) => (error instanceof EngineError ? `failed as ${error.kind}` : `failed: ${String(error)}`),
  );
  if (cancelledAt === undefined) throw new Error(`the stop point was never reached (${outcome})`);
  return { settledMs: performance.now() - cancelledAt, outcome, sameProcess: client.processId === processId };
}

void main();
