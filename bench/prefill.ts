/**
 * Measured speed of every method and budget against the unreduced model and against the limit the FLOPs
 * set: vision ms, LLM prefill ms, TTFT, decode tokens/s, peak resident memory and analytic FLOPs, on a
 * full-size architecture with random weights (bench/randomModel.ts) or any model folder. After a warm-up,
 * each configuration runs `--runs` times and reports medians. Speedups are paired: a second engine keeps the
 * unreduced plan loaded and runs right before each reduced run, so drift on a shared machine cancels out.
 * A decoder cut to fewer layers (--arch llava-7b --layers N) is scaled to full depth: its LLM milliseconds
 * and FLOPs are multiplied by 32 / N, and the report says so.
 *
 *   node --import tsx bench/prefill.ts [--arch tinyllava|llava-7b] [--layers 8] [--image-size 336] [--model DIR]
 *       [--methods all|a,b] [--budgets 192,128,64] [--runs 3] [--decode 32] [--name NAME]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { LlavaEngine } from '../src/engine/engine';
import { METHODS, planHooks, planReduction } from '../src/reduction/registry';
import { lineChartSvg } from '../src/report/lineChart';
import { TINYLLAVA, llava7b, withImageSize, writeRandomModel } from './randomModel';
import { peakResidentMiB, syntheticPixels } from './probe';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    arch: { type: 'string', default: 'tinyllava' },
    layers: { type: 'string', default: '8' },
    'image-size': { type: 'string' },
    methods: { type: 'string', default: 'all' },
    budgets: { type: 'string', default: '192,128,64' },
    runs: { type: 'string', default: '3' },
    decode: { type: 'string', default: '32' },
    'text-tokens': { type: 'string', default: '40' },
    name: { type: 'string' },
    out: { type: 'string', default: 'bench/results' },
  },
});

interface Row {
  method: string;
  budget: number | undefined;
  keptTokens: number;
  visionMs: number;
  llmMs: number;
  ttftMs: number;
  stepsMs: number;
  decodeTokensPerSecond: number;
  peakMiB: number;
  /** median over runs of (unreduced prefill right before) / (this prefill), LLM part scaled by llmScale */
  pairedSpeedup: number;
  visionFlops: number;
  llmFlops: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const base = values.arch === 'llava-7b' ? llava7b(Number(values.layers)) : TINYLLAVA;
  const arch = values['image-size'] ? withImageSize(base, Number(values['image-size'])) : base;
  const modelDir = values.model ?? writeRandomModel(arch, path.join(os.tmpdir(), 'ficoco-bench', `${arch.name}-f32`), 'F32');
  // The LLM part of a cut decoder, scaled to the architecture's full depth.
  const llmScale = values.model === undefined && values.arch === 'llava-7b' ? 32 / Number(values.layers) : 1;
  const engine = await LlavaEngine.load(modelDir, { provider: 'cpu' });
  // A second engine keeps the unreduced sessions: switching plans on one engine would rebuild them every run.
  const reference = await LlavaEngine.load(modelDir, { provider: 'cpu' });
  const { config } = engine;
  const side = config.vision.imageSize;
  const pixels = syntheticPixels(side);
  const text = Array.from({ length: Number(values['text-tokens']) }, (_, i) => 10 + (i % 50));
  const ids = [...text.slice(0, 5), config.imageTokenId, ...text.slice(5)];
  const runs = Number(values.runs);
  const decode = Number(values.decode);

  /** Warm-up, `runs` timed prefills, then one decode of `decode` tokens. */
  const baselinePrefills: number[] = [];
  const scaledPrefill = (timings: { visionMs: number; prefillMs: number }) => timings.visionMs + llmScale * timings.prefillMs;
  const measure = async (method: string, budget: number | undefined): Promise<Row> => {
    const hooks = budget === undefined ? [] : planHooks(planReduction(method, { tokens: budget }, engine.reductionShape));
    const prefill = async (on: LlavaEngine, withHooks: typeof hooks) => {
      const started = performance.now();
      let firstToken = 0;
      const result = await on.generate(ids, [pixels], { maxNewTokens: 1, stopTokenIds: [], hooks: withHooks, onToken: () => (firstToken ||= performance.now() - started) });
      return { result, ttft: firstToken };
    };
    await prefill(engine, hooks);
    const timed = [];
    const ratios: number[] = [];
    for (let i = 0; i < runs; i++) {
      const unreduced = scaledPrefill((await prefill(reference, [])).result.timings);
      baselinePrefills.push(unreduced);
      timed.push(await prefill(engine, hooks));
      ratios.push(unreduced / scaledPrefill(timed[i].result.timings));
    }
    const decoded = await engine.generate(ids, [pixels], { maxNewTokens: decode + 1, stopTokenIds: [], hooks });
    const last = timed[timed.length - 1].result;
    return {
      method,
      budget,
      keptTokens: last.steps.length > 0 ? last.steps[last.steps.length - 1].tokensAfter : last.visualTokens[0].atDecoder,
      visionMs: median(timed.map((t) => t.result.timings.visionMs)),
      llmMs: median(timed.map((t) => t.result.timings.prefillMs)),
      ttftMs: median(timed.map((t) => t.ttft)),
      stepsMs: median(timed.map((t) => t.result.steps.reduce((sum, s) => sum + s.ms, 0))),
      decodeTokensPerSecond: (decode * 1000) / decoded.timings.decodeMs,
      peakMiB: peakResidentMiB(),
      pairedSpeedup: median(ratios),
      visionFlops: last.flops.run.vision + last.flops.run.projector,
      llmFlops: last.flops.run.llm,
    };
  };

  const methods = values.methods === 'all' ? METHODS.map((m) => m.name) : values.methods!.split(',');
  const budgets = values.budgets!.split(',').map(Number);
  const baseline = await measure('none', undefined);
  process.stderr.write(`none: prefill ${(baseline.visionMs + baseline.llmMs).toFixed(0)} ms\n`);
  const rows: Row[] = [baseline];
  for (const method of methods) {
    for (const budget of budgets) {
      rows.push(await measure(method, budget));
      const row = rows[rows.length - 1];
      process.stderr.write(`${method} ${budget}: vision ${row.visionMs.toFixed(0)} ms, LLM ${row.llmMs.toFixed(0)} ms\n`);
    }
  }
  await engine.dispose();
  await reference.dispose();
  writeReport(modelDir, values.model ? path.basename(modelDir) : arch.label, llmScale, rows, baseline, baselinePrefills);
}

function writeReport(modelDir: string, label: string, llmScale: number, rows: Row[], baseline: Row, baselinePrefills: number[]): void {
  const name = values.name ?? `prefill-${path.basename(modelDir).replace(/-f32$/, '')}`;
  const prefill = (r: Row) => r.visionMs + llmScale * r.llmMs;
  const flops = (r: Row) => r.visionFlops + llmScale * r.llmFlops;
  const speedup = (r: Row) => r.pairedSpeedup;
  const flopsRatio = (r: Row) => flops(baseline) / flops(r);
  const cpu = os.cpus();
  const table = [
    '| method | budget | visual tokens kept | vision ms | LLM prefill ms | TTFT ms | prefill speedup | FLOPs ratio | speedup / FLOPs ratio | reduction steps ms (% of prefill) | decode tokens/s | peak resident GiB |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.method} | ${r.budget ?? 'all'} | ${r.keptTokens} | ${r.visionMs.toFixed(0)} | ${(llmScale * r.llmMs).toFixed(0)} | ${r.ttftMs.toFixed(0)} | ${speedup(r).toFixed(2)}× | ${flopsRatio(r).toFixed(2)}× | ${((100 * speedup(r)) / flopsRatio(r)).toFixed(0)} % | ${r.stepsMs.toFixed(1)} (${((100 * r.stepsMs) / prefill(r)).toFixed(1)} %) | ${r.decodeTokensPerSecond.toFixed(2)} | ${(r.peakMiB / 1024).toFixed(2)} |`),
  ];
  const reduced = rows.filter((r) => r.budget !== undefined);
  const byMethod = [...new Set(reduced.map((r) => r.method))];
  fs.mkdirSync(values.out!, { recursive: true });
  fs.writeFileSync(path.join(values.out!, `${name}-speedup.svg`), lineChartSvg({
    title: `Prefill speedup against visual tokens kept (${label})`,
    xLabel: 'visual tokens kept',
    yLabel: 'measured prefill speedup (×)',
    series: byMethod.map((method) => ({ name: method, points: reduced.filter((r) => r.method === method).map((r): [number, number] => [r.keptTokens, speedup(r)]) })),
  }));
  fs.writeFileSync(path.join(values.out!, `${name}-vs-flops.svg`), lineChartSvg({
    title: 'Measured prefill speedup against the analytic FLOPs ratio (y = x: the limit)',
    xLabel: 'FLOPs ratio, unreduced / reduced (×)',
    yLabel: 'measured prefill speedup (×)',
    diagonal: true,
    series: byMethod.map((method) => ({ name: method, points: reduced.filter((r) => r.method === method).map((r): [number, number] => [flopsRatio(r), speedup(r)]) })),
  }));
  fs.writeFileSync(path.join(values.out!, `${name}.md`), [
    `# ${name}`,
    '',
    `${label}${llmScale !== 1 ? ` (LLM prefill ms and FLOPs scaled ×${llmScale} from the cut decoder to full depth; TTFT and decode tokens/s are the cut model's)` : ''}: ${modelDir}; one image (${baseline.keptTokens} visual tokens) and ${values['text-tokens']} text tokens; ${values.runs} timed prefills after one warm-up, medians; decode over ${values.decode} tokens. Machine: ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ONNX Runtime CPU provider, float32. Speedups are paired: the unreduced prefill ran right before every reduced one, on a second engine; across the run it took ${Math.min(...baselinePrefills).toFixed(0)}–${Math.max(...baselinePrefills).toFixed(0)} ms (this machine's noise). Peak resident memory is the process's high-water mark so far, with both engines loaded, so it only grows down the table.`,
    '',
    ...table,
    '',
    `![speedup](${name}-speedup.svg)`,
    '',
    `![speedup vs FLOPs](${name}-vs-flops.svg)`,
    '',
  ].join('\n'));
  process.stdout.write(table.join('\n') + '\n');
}

void main();
