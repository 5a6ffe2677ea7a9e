/**
 * The first question after a model loads against the ones after it, as the chat asks them: load, warm up with the
 * reduction (what the extension does at load), then `--questions` questions about one 1920 × 1080 screenshot, on
 * LLaVA-OneVision-0.5B shapes (random weights): unreduced, and FiCoCo-V at 11 % on its published schedule and from the
 * tower's first layer. Rows run one after another in this process, each on an engine of its own.
 *
 *   npm run build && node --import tsx bench/first-question.ts [--questions 3] > bench/results/first-question.md
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { PNG } from 'pngjs';
import type { ReductionRequest } from '../src/common/reductionChoice';
import { machineLine, median, syntheticScreenshot } from '../src/cli/benchTiming';
import { LlavaEngine } from '../src/engine/engine';
import { ONEVISION_05B, randomModelDir, writeRandomModel } from './randomModel';
import { continueAsEngineProcess } from '../src/cli/engineProcess';

const { values } = parseArgs({ options: { questions: { type: 'string', default: '3' } } });
const questions = Number(values.questions);
const QUESTION = 'What does the error dialog say?';
const SIZE = { width: 1920, height: 1080 };

const ROWS: [string, ReductionRequest][] = [
  ['none', { method: 'none' }],
  ['ficoco-v 11 %', { method: 'ficoco-v', budget: { ratio: 0.11 } }],
  ['ficoco-v 11 %, start=0', { method: 'ficoco-v', budget: { ratio: 0.11 }, params: { start: 0 } }],
];

/** The synthetic screenshot as PNG bytes: the chat hands the engine a file. */
function screenshotPng(): Uint8Array {
  const { width, height, rgb } = syntheticScreenshot(SIZE);
  const png = new PNG({ width, height, colorType: 2 });
  for (let i = 0; i < width * height; i++) png.data.set([rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], 255], 4 * i);
  return PNG.sync.write(png, { colorType: 2 });
}

/** Milliseconds and minor page faults of `work`. */
async function measured(work: () => Promise<unknown>): Promise<{ ms: number; faults: number }> {
  const faults = process.resourceUsage().minorPageFault;
  const started = performance.now();
  await work();
  return { ms: performance.now() - started, faults: process.resourceUsage().minorPageFault - faults };
}

async function main() {
  // The engine's process settings (V8's old-space floor, glibc's huge pages) take effect only at a start.
  await continueAsEngineProcess();
  const modelDir = writeRandomModel(ONEVISION_05B, randomModelDir(ONEVISION_05B), 'F32');
  const image = { bytes: screenshotPng(), name: 'screenshot.png' };
  const rows: string[] = [];
  for (const [label, reduction] of ROWS) {
    let engine: LlavaEngine | undefined;
    const load = await measured(async () => (engine = await LlavaEngine.load(modelDir)));
    try {
      const warmUp = await measured(() => engine!.warmUp(reduction));
      const asked = [];
      for (let i = 0; i < questions; i++)
        asked.push(
          await measured(() => engine!.ask({ question: QUESTION, images: [image], reduction, maxNewTokens: 1 })),
        );
      const [first, ...later] = asked;
      const laterMs = later.map((question) => question.ms);
      const range = `${Math.min(...laterMs).toFixed(0)}–${Math.max(...laterMs).toFixed(0)}`;
      rows.push(
        `| ${label} | ${load.ms.toFixed(0)} | ${warmUp.ms.toFixed(0)} | ${first.ms.toFixed(0)} | ` +
          `${median(laterMs).toFixed(0)} (${range}) | ${(first.ms / median(laterMs)).toFixed(2)} | ` +
          `${(first.faults / 1e3).toFixed(0)} K / ${(median(later.map((q) => q.faults)) / 1e3).toFixed(0)} K |`,
      );
      process.stderr.write(`${rows[rows.length - 1]}\n`);
    } finally {
      await engine?.dispose();
    }
  }
  const report = [
    '# The first question after a load',
    '',
    `\`npm run build && node --import tsx bench/first-question.ts --questions ${questions}\``,
    '',
    `LLaVA-OneVision-0.5B shapes, random F32 weights (${path.basename(modelDir)}), a ${SIZE.width} × ${SIZE.height} ` +
      `synthetic screenshot as a PNG and "${QUESTION}", one new token. Per row, a new engine: its load, its ` +
      `warm-up with the row's reduction (as the extension warms up at load), then ${questions} questions; later ` +
      'questions are the median (range) of all but the first. Page faults are minor ones (fresh pages) of the ' +
      `whole process. ${machineLine()}`,
    '',
    '| reduction | load ms | warm-up ms | 1st question ms | later questions ms | 1st ÷ later | page faults 1st / later |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ];
  process.stdout.write(`${report.join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
