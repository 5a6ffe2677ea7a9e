/**
 * Cost as the image grows (more visual tokens through a larger vision input) and as the prompt grows, with
 * and without reduction, on CLIP-L + TinyLlama-1.1B shapes with random weights. Reduced runs keep the
 * paper's share of the visual tokens (64 of 576, rounded), so a bigger screenshot keeps more of them.
 * Each point: warm-ups, then `--runs` rounds of [unreduced, reduced] (bench/measure.ts), medians.
 *
 *   node --import tsx bench/scaling.ts [--sizes 168,336,476,672] [--text 40,320,1280] [--method ficoco-v] [--runs 2]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import {
  Row,
  flopsOf,
  machineLine,
  measureMethod,
  prefillMs,
  syntheticPixels,
  syntheticPrompt,
  timedPrefill,
  unreducedRow,
} from '../src/cli/benchTiming';
import { LlavaEngine } from '../src/engine/engine';
import { lineChartSvg } from '../src/report/lineChart';
import { TINYLLAVA, randomModelDir, withImageSize, writeRandomModel } from './randomModel';
import { continueAsEngineProcess } from '../src/cli/engineProcess';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '168,336,476,672' },
    text: { type: 'string', default: '40,320,1280' },
    method: { type: 'string', default: 'ficoco-v' },
    runs: { type: 'string', default: '2' },
    'base-size': { type: 'string', default: '336' },
    out: { type: 'string', default: 'bench/results' },
  },
});

const KEPT_SHARE = 64 / 576;
const BASE_TEXT_TOKENS = 40;

interface Point {
  visualTokens: number;
  textTokens: number;
  unreduced: Row;
  reduced: Row;
}

/** Unreduced and reduced rows of one model and prompt length, both engines loaded for the duration. */
async function measurePoints(modelDir: string, textLengths: readonly number[]): Promise<Point[]> {
  const engine = await LlavaEngine.load(modelDir, { provider: 'cpu' });
  const reference = await LlavaEngine.load(modelDir, { provider: 'cpu' });
  const points: Point[] = [];
  try {
    const pixels = syntheticPixels(engine.config.vision.imageSize);
    const visualTokens = engine.reductionShape.visualTokens;
    for (const textTokens of textLengths) {
      const prompt = syntheticPrompt(engine, textTokens, pixels);
      await timedPrefill(reference, prompt, []);
      const budget = Math.round(visualTokens * KEPT_SHARE);
      const measured = await measureMethod(engine, reference, prompt, values.method!, [{ tokens: budget }], {
        runs: Number(values.runs),
        decode: 0,
        llmScale: 1,
      });
      points.push({
        visualTokens,
        textTokens,
        unreduced: unreducedRow(measured.unreduced, 1),
        reduced: measured.rows[0],
      });
      process.stderr.write(
        `${visualTokens} visual + ${textTokens} text tokens: ` +
          `${(prefillMs(points[points.length - 1].unreduced) / 1000).toFixed(1)} s unreduced, ${measured.rows[0].pairedSpeedup.toFixed(2)}×\n`,
      );
    }
  } finally {
    await engine.dispose();
    await reference.dispose();
  }
  return points;
}

async function main(): Promise<void> {
  // The engine's process settings (V8's old-space floor, glibc's huge pages) take effect only at a start.
  await continueAsEngineProcess();
  const imagePoints: Point[] = [];
  for (const size of values.sizes!.split(',').map(Number)) {
    const isBase = size === Number(values['base-size']);
    const arch = isBase ? TINYLLAVA : withImageSize(TINYLLAVA, size);
    const dir = writeRandomModel(arch, randomModelDir(arch), 'F32');
    imagePoints.push(...(await measurePoints(dir, [BASE_TEXT_TOKENS])));
    // The other sizes' 5 GiB folders are only needed for this run.
    if (!isBase) fs.rmSync(dir, { recursive: true, force: true });
  }
  const base = writeRandomModel(TINYLLAVA, randomModelDir(TINYLLAVA), 'F32');
  const promptPoints = await measurePoints(base, values.text!.split(',').map(Number));
  writeReport(imagePoints, promptPoints);
}

function writeReport(imagePoints: Point[], promptPoints: Point[]): void {
  const method = values.method!;
  const header =
    `| visual tokens | text tokens | unreduced vision ms | unreduced LLM ms | unreduced prefill ms | ` +
    `${method} kept | ${method} vision ms | ${method} LLM ms | ${method} prefill ms | speedup | FLOPs ` +
    `ratio | speedup / FLOPs ratio |`;
  const table = (points: Point[]) => [
    header,
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...points.map(({ visualTokens, textTokens, unreduced, reduced }) => {
      const flopsRatio = flopsOf(unreduced) / flopsOf(reduced);
      return (
        `| ${visualTokens} | ${textTokens} | ${unreduced.visionMs.toFixed(0)} | ` +
        `${unreduced.llmMs.toFixed(0)} | ${prefillMs(unreduced).toFixed(0)} | ${reduced.keptTokens} | ` +
        `${reduced.visionMs.toFixed(0)} | ${reduced.llmMs.toFixed(0)} | ${prefillMs(reduced).toFixed(0)} | ` +
        `${reduced.pairedSpeedup.toFixed(2)}× | ${flopsRatio.toFixed(2)}× | ` +
        `${((100 * reduced.pairedSpeedup) / flopsRatio).toFixed(0)} % |`
      );
    }),
  ];
  const chart = (points: Point[], x: (p: Point) => number, xLabel: string, title: string) =>
    lineChartSvg({
      title,
      xLabel,
      yLabel: 'prefill seconds (vision + LLM)',
      series: [
        { name: 'unreduced', points: points.map((p): [number, number] => [x(p), prefillMs(p.unreduced) / 1000]) },
        {
          name: `${method}, ${Math.round(KEPT_SHARE * 1000) / 10} % kept`,
          points: points.map((p): [number, number] => [x(p), prefillMs(p.reduced) / 1000]),
        },
      ],
    });
  const out = values.out!;
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(
    path.join(out, 'scaling-image.svg'),
    chart(
      imagePoints,
      (p) => p.visualTokens,
      'visual tokens (vision input 168 → 672 px)',
      'Prefill cost as the image grows',
    ),
  );
  fs.writeFileSync(
    path.join(out, 'scaling-prompt.svg'),
    chart(
      promptPoints,
      (p) => p.textTokens,
      'text tokens in the prompt',
      'Prefill cost as the prompt grows (576 visual tokens)',
    ),
  );
  fs.writeFileSync(
    path.join(out, 'scaling.md'),
    [
      '# Scaling: prefill cost as the image and the prompt grow',
      '',
      `\`node --import tsx ${['bench/scaling.ts', ...process.argv.slice(2)].join(' ')}\``,
      '',
      `${TINYLLAVA.label} shapes, random F32 weights; the vision input resized (and CLIP's position table ` +
        `with it) for more visual tokens. ${method} keeps ${(100 * KEPT_SHARE).toFixed(1)} % of the visual ` +
        `tokens (the paper's 64 of 576). Each point: warm-ups, then ${values.runs} rounds of [unreduced, ` +
        `reduced]; medians; speedups paired within each round. ${machineLine()}`,
      '',
      `## Image size (${BASE_TEXT_TOKENS} text tokens)`,
      '',
      ...table(imagePoints),
      '',
      '![image scaling](scaling-image.svg)',
      '',
      '## Prompt length (576 visual tokens)',
      '',
      ...table(promptPoints),
      '',
      '![prompt scaling](scaling-prompt.svg)',
      '',
    ].join('\n'),
  );
  process.stdout.write([...table(imagePoints), '', ...table(promptPoints)].join('\n') + '\n');
}

void main();
