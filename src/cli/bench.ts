import * as fs from 'node:fs';
import * as path from 'node:path';
import { LlavaEngine } from '../engine/engine';
import { writeFileAtomically } from '../common/atomicFile';
import { FicocoError } from '../common/errors';
import { Budget } from '../common/budget';
import { findMethod, resolveParams } from '../reduction/registry';
import { lineChartSvg } from '../report/lineChart';
import { partialNote } from '../report/partialNote';
import type { ScoreCount } from '../flops';
import {
  DEFAULT_IMAGE_SIZE,
  budgetsArg,
  imageSizeArg,
  integer,
  methodsArg,
  number,
  outputFolderArg,
  outputNameArg,
  paramArgs,
  providerArg,
  quantizationArg,
  parseCommandArgs,
  threadsArg,
  CommandOptions,
} from './args';
import {
  Row,
  Sample,
  checkReductions,
  flopsOf,
  machineLine,
  measureMethod,
  peakResidentMiB,
  prefillCpuMs,
  prefillMs,
  syntheticPixels,
  syntheticPrompt,
  syntheticScreenshot,
  timedPrefill,
  unreducedRow,
} from './benchTiming';
import { modelDirArg } from './models';

export const BENCH_USAGE = `Usage:
  ficoco bench [--model DIR] [--methods all|a,b] [--budgets 192,128,64] [--runs 3] [--decode 32]
               [--text-tokens 40] [--image-size WxH] [--provider NAME] [--threads N] [--quantize none|int8|int4]
               [--param NAME=VALUE ...] [--out bench/results] [--name NAME] [--label TEXT] [--llm-scale 1]

Measures the speed of every method and budget against the unreduced model on this machine: vision ms,
LLM prefill ms, time to first token, decode tokens/s, peak resident memory, and the analytic FLOPs
ratio (the limit a method's speedup can reach), as the FiCoCo paper counts it and with the decoder's
attention counted causally; the LLM prefill's own speedup and FLOPs ratio too, the part the paper's FLOPs
count. Each method gets a warm-up, then --runs rounds of
[unreduced prefill, the method at each budget]; speedups are paired within a round, then medians.
Writes NAME.md, NAME.json (every row unrounded), NAME-speedup.svg and NAME-vs-flops.svg to the output
folder, rewritten after each method: a run stopped part-way leaves the methods it finished, marked
partial. Budgets default to a third, two ninths and a ninth of the model's visual tokens (192, 128, 64
of 576); on a tiled model (LLaVA-NeXT, LLaVA-OneVision) to 25 % and 11 % of a synthetic screenshot of
--image-size (default 1920x1080), tiled as the model tiles it. --param sets a parameter of the one method given by --methods.
--label names the model in the report and charts (default: its folder's name). --llm-scale X multiplies the LLM
prefill's milliseconds and FLOPs, for a decoder cut to fewer layers (bench/prefill.ts --layers: 32 / layers).
`;

export const BENCH_OPTIONS = {
  model: { type: 'string' },
  methods: { type: 'string', default: 'all' },
  budgets: { type: 'string' },
  runs: { type: 'string', default: '3' },
  decode: { type: 'string', default: '32' },
  'text-tokens': { type: 'string', default: '40' },
  'image-size': { type: 'string' },
  provider: { type: 'string', default: 'cpu' },
  threads: { type: 'string' },
  quantize: { type: 'string' },
  param: { type: 'string', multiple: true },
  // A decoder cut to fewer layers (bench/prefill.ts): its LLM milliseconds and FLOPs times this.
  'llm-scale': { type: 'string', default: '1' },
  label: { type: 'string' },
  out: { type: 'string', default: 'bench/results' },
  name: { type: 'string' },
  help: { type: 'boolean' },
} satisfies CommandOptions;

interface BenchRow extends Row {
  peakMiB: number;
}

/** `ficoco bench`: measured prefill speed of every method and budget. */
export async function benchCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs('bench', { args, options: BENCH_OPTIONS });
  if (values.help) {
    process.stdout.write(BENCH_USAGE);
    return 0;
  }
  const modelDir = modelDirArg(values.model);
  const methods = methodsArg(values.methods);
  if (values.param !== undefined && methods.length !== 1)
    throw new FicocoError(
      '--param needs exactly one method in --methods (parameters differ between methods).',
      'input',
    );
  // A parameter the method lacks is refused before anything loads.
  for (const method of methods) resolveParams(findMethod(method), paramArgs(values.param));
  const options = {
    runs: integer('--runs', values.runs, 1),
    decode: integer('--decode', values.decode, 0),
    llmScale: number('--llm-scale', values['llm-scale'], 1),
    params: paramArgs(values.param),
  };
  const givenBudgets = values.budgets === undefined ? undefined : budgetsArg(values.budgets);
  const textTokens = integer('--text-tokens', values['text-tokens'], 5);
  const provider = providerArg(values.provider);
  const load = {
    provider,
    threads: threadsArg(values.threads),
    quantization: quantizationArg(values.quantize),
  };
  // Where the report goes is checked now, not after the whole run.
  const out = outputFolderArg('--out', values.out);
  const name = outputNameArg(values.name ?? `prefill-${path.basename(path.resolve(modelDir))}`);
  const screenshot = imageSizeArg(values['image-size'] ?? DEFAULT_IMAGE_SIZE);
  const engine = await LlavaEngine.load(modelDir, load);
  // A second engine keeps the unreduced sessions: switching plans on one engine rebuilds them.
  const reference = await LlavaEngine.load(modelDir, load);
  const rows: BenchRow[] = [];
  const unreduced: Sample[] = [];
  let unreducedPeakMiB = 0;
  const tiled = engine.config.tiling !== undefined;
  const label = values.label ?? path.basename(path.resolve(modelDir));
  const scaled =
    options.llmScale !== 1
      ? ` LLM prefill ms and FLOPs are scaled ×${options.llmScale} from the cut decoder to full depth; TTFT ` +
        `and decode tokens/s are the cut model's.`
      : '';
  // The report is written once the unreduced row is measured, then rewritten after every method, whole or not at
  // all: a run stopped (Ctrl+C) or failed keeps the methods it finished, marked as partial, and never leaves a
  // half-written file. Returns the table.
  const report = async (methodsDone: number): Promise<string[]> => {
    const allRows = [{ ...unreducedRow(unreduced, options.llmScale), peakMiB: unreducedPeakMiB }, ...rows];
    const table = reportTable(allRows, options.llmScale);
    const baseline = allRows[0];
    const partial = methodsDone < methods.length ? { partial: { methodsDone, methods: methods.length } } : {};
    fs.mkdirSync(out, { recursive: true });
    await writeCharts(out, name, label, allRows, options.llmScale);
    await writeFileAtomically(
      path.join(out, `${name}.json`),
      `${JSON.stringify({ command: ['ficoco', 'bench', ...args], model: modelDir, ...partial, rows: allRows }, null, 1)}\n`,
    );
    const intro = [
      `# ${name}`,
      '',
      `\`ficoco bench ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}\``,
      '',
      `${label} (${modelDir}${engine.quantizedWeights ? `, weights ${engine.quantizedWeights}` : ''}); ${tiled ? `a ${screenshot.width} × ${screenshot.height} synthetic screenshot` : 'one image'} (${baseline.keptTokens} visual tokens) and ${textTokens} text tokens.${scaled} ${machineLine(engine.provider, engine.threads)}`,
      '',
      `Per method: one warm-up, then ${options.runs} rounds of [unreduced prefill, the method at each ` +
        `budget]; medians. Speedups are paired: each reduced prefill is divided into the unreduced one run ` +
        `just before it, then the median is taken. Unreduced prefills across the run: ` +
        `${Math.min(...baseline.prefills).toFixed(0)}–${Math.max(...baseline.prefills).toFixed(0)} ms (the ` +
        `machine's noise). CPU-time speedups divide CPU time (every thread, user + system) the same way: ` +
        `they count the work done, which waiting for a busy machine does not inflate. The FLOPs ratio counts ` +
        `as the FiCoCo paper does (LLM-Viewer: every query with every key); the causal one counts only the ` +
        `decoder's query-key pairs that its causal mask keeps, those a decoder skipping masked scores computes. ` +
        `CPU steal is the ` +
        `median share of the machine's CPU time the hypervisor gave to other guests during a row's prefills. ` +
        `Major page faults over the whole run: ${allRows.reduce((sum, r) => sum + r.majorFaults, 0)}. Decode ` +
        `tokens/s: ${options.decode} tokens after the first, in the first round. Peak resident memory is the ` +
        `process's high-water mark so far with both engines loaded, so it only grows down the table.`,
      '',
      '',
    ].join('\n');
    await writeFileAtomically(
      path.join(out, `${name}.md`),
      intro +
        partialNote(methodsDone, methods.length, 'methods') +
        [...table, '', `![speedup](${name}-speedup.svg)`, '', `![speedup vs FLOPs](${name}-vs-flops.svg)`, ''].join(
          '\n',
        ),
    );
    return table;
  };
  let table: string[] = [];
  try {
    const visualTokens = engine.reductionShape.visualTokens;
    const budgets: Budget[] =
      givenBudgets ??
      (tiled
        ? [{ ratio: 0.25 }, { ratio: 0.11 }]
        : [3, 4.5, 9].map((share) => ({ tokens: Math.round(visualTokens / share) })));
    if (values['image-size'] !== undefined && !tiled)
      throw new FicocoError(`--image-size needs a tiled model; ${modelDir} sees every image at one size.`, 'input');
    const pixels = tiled
      ? engine.imagePixels(syntheticScreenshot(screenshot))
      : syntheticPixels(engine.config.vision.imageSize);
    checkReductions(engine, methods, budgets, options.params, [pixels.size]);
    const prompt = syntheticPrompt(engine, textTokens, pixels);
    await timedPrefill(reference, prompt, []);
    unreduced.push(await timedPrefill(reference, prompt, [], options.decode));
    unreducedPeakMiB = peakResidentMiB();
    // A method on full-size shapes takes minutes: --out shows the run from its start.
    await report(0);
    for (const [i, method] of methods.entries()) {
      const measured = await measureMethod(engine, reference, prompt, method, budgets, options);
      unreduced.push(...measured.unreduced);
      for (const row of measured.rows) {
        rows.push({ ...row, peakMiB: peakResidentMiB() });
        process.stderr.write(
          `${method} ${row.budget}: vision ${row.visionMs.toFixed(0)} ms, LLM ${row.llmMs.toFixed(0)} ms, ` +
            `${row.pairedSpeedup.toFixed(2)}× (CPU time ${row.pairedCpuSpeedup.toFixed(2)}×)\n`,
        );
      }
      table = await report(i + 1);
    }
  } finally {
    await engine.dispose();
    await reference.dispose();
  }
  process.stdout.write(
    `${table.join('\n')}\n\nwrote ${path.join(out, `${name}.md`)}, ${name}.json, ${name}-speedup.svg and ${name}-vs-flops.svg\n`,
  );
  return 0;
}

const flopsRatio = (baseline: Row, row: Row, llmScale: number, scores: ScoreCount = 'all') =>
  flopsOf(baseline, llmScale, scores) / flopsOf(row, llmScale, scores);

/** "12.3 (1.5 %)": milliseconds and their share of a whole. */
const msWithShare = (ms: number, whole: number) => `${ms.toFixed(1)} (${((100 * ms) / whole).toFixed(1)} %)`;

/** A figure that was not measured (NaN) shows as a dash. */
const orDash = (value: number, format: (value: number) => string) => (Number.isNaN(value) ? '–' : format(value));

function reportTable(rows: BenchRow[], llmScale: number): string[] {
  const [baseline] = rows;
  return [
    '| method | budget | visual tokens kept | vision ms | LLM prefill ms | TTFT ms | prefill speedup | ' +
      'CPU-time speedup | FLOPs ratio | speedup / FLOPs ratio | causal FLOPs ratio (speedup / it) | ' +
      'LLM prefill speedup (LLM FLOPs ratio) | ' +
      'reduction steps ms (% of prefill) | steps CPU ms (% of prefill CPU) | CPU steal | decode tokens/s | ' +
      'peak resident GiB |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => {
      const ratio = flopsRatio(baseline, r, llmScale);
      const causalRatio = flopsRatio(baseline, r, llmScale, 'causal');
      const causal = `${causalRatio.toFixed(2)}× (${((100 * r.pairedSpeedup) / causalRatio).toFixed(0)} %)`;
      const steps = msWithShare(r.stepsMs, prefillMs(r, llmScale));
      const stepsCpu = msWithShare(r.stepsCpuMs, prefillCpuMs(r, llmScale));
      const llm = `${r.pairedLlmSpeedup.toFixed(2)}× (${(baseline.llmFlops / r.llmFlops).toFixed(2)}×)`;
      return `| ${r.method} | ${r.budget} | ${r.keptTokens} | ${r.visionMs.toFixed(0)} | ${(llmScale * r.llmMs).toFixed(0)} | ${r.ttftMs.toFixed(0)} | ${r.pairedSpeedup.toFixed(2)}× | ${r.pairedCpuSpeedup.toFixed(2)}× | ${ratio.toFixed(2)}× | ${((100 * r.pairedSpeedup) / ratio).toFixed(0)} % | ${causal} | ${llm} | ${steps} | ${stepsCpu} | ${orDash(r.stealShare, (share) => `${(100 * share).toFixed(1)} %`)} | ${orDash(r.decodeTokensPerSecond, (rate) => rate.toFixed(2))} | ${(r.peakMiB / 1024).toFixed(2)} |`;
    }),
  ];
}

async function writeCharts(
  out: string,
  name: string,
  label: string,
  rows: BenchRow[],
  llmScale: number,
): Promise<void> {
  const [baseline, ...reduced] = rows;
  const methods = [...new Set(reduced.map((r) => r.method))];
  const series = (x: (r: Row) => number) =>
    methods.map((method) => ({
      name: method,
      points: reduced.filter((r) => r.method === method).map((r): [number, number] => [x(r), r.pairedSpeedup]),
    }));
  await writeFileAtomically(
    path.join(out, `${name}-speedup.svg`),
    lineChartSvg({
      title: `Prefill speedup against visual tokens kept (${label})`,
      xLabel: 'visual tokens kept',
      yLabel: 'measured prefill speedup (×)',
      series: series((r) => r.keptTokens),
    }),
  );
  await writeFileAtomically(
    path.join(out, `${name}-vs-flops.svg`),
    lineChartSvg({
      title: 'Measured prefill speedup against the analytic FLOPs ratio (y = x: the limit)',
      xLabel: 'FLOPs ratio, unreduced / reduced (×)',
      yLabel: 'measured prefill speedup (×)',
      diagonal: true,
      series: series((r) => flopsRatio(baseline, r, llmScale)),
    }),
  );
}
