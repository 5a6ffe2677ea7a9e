import * as fs from 'node:fs';
import * as path from 'node:path';
import { type ImagePixels, LlavaEngine } from '../engine/engine';
import { writeFileAtomically } from '../common/atomicFile';
import { FicocoError } from '../common/errors';
import { Budget, budgetLabel } from '../common/budget';
import { findMethod, resolveParams } from '../reduction/registry';
import type { ParamValue } from '../common/budget';
import { lineChartSvg } from '../report/lineChart';
import { partialNote } from '../report/partialNote';
import {
  budgetsArg,
  integer,
  methodsArg,
  outputFolderArg,
  outputNameArg,
  paramArgs,
  providerArg,
  quantizationArg,
  quantizingOnStderr,
  parseCommandArgs,
  threadsArg,
  CommandOptions,
} from './args';
import { EvalItem, answerMatches, answerWords, evalImageSizes, readEvalSet } from './evalSet';
import { checkReductions, keptVisualTokens, machineLine } from './benchTiming';
import { modelDirArg } from './models';

export const EVAL_USAGE = `Usage:
  ficoco eval [--model DIR] --data FILE.jsonl [--methods all|a,b] [--budgets 64,32,16] [--limit N]
              [--param NAME=VALUE ...] [--max-new-tokens 8] [--quantize none|int8|int4]
              [--provider NAME] [--threads N] [--out bench/results] [--name NAME]

Answers every item of an evaluation set (one JSON object per line: image (path relative to the file),
question, answer, type) with the full visual tokens and with each method at each budget, and writes
NAME.md (accuracy overall and per question type, visual tokens kept, analytic FLOPs, measured prefill ms)
and NAME.svg (accuracy against kept tokens, one line per method) to the output folder, rewritten after
each setting: a run stopped part-way leaves those it finished, marked partial. --param sets a
parameter of every method evaluated (an ablation: --methods ficoco-v --param penalty=1); the rows name it.
--budgets defaults to 64,32,16 visual tokens, or on a model that reads an image in tiles (LLaVA-NeXT,
LLaVA-OneVision), whose images bring tokens by their size, to the same shares of each image: 11%,5.6%,2.8%.
`;

export const EVAL_OPTIONS = {
  model: { type: 'string' },
  data: { type: 'string' },
  methods: { type: 'string', default: 'all' },
  budgets: { type: 'string' },
  param: { type: 'string', multiple: true },
  limit: { type: 'string' },
  'max-new-tokens': { type: 'string', default: '8' },
  quantize: { type: 'string' },
  provider: { type: 'string', default: 'cpu' },
  threads: { type: 'string' },
  out: { type: 'string', default: 'bench/results' },
  name: { type: 'string' },
  help: { type: 'boolean' },
} satisfies CommandOptions;

export interface EvalRow {
  method: string;
  budget: string;
  keptTokens: number;
  correct: number;
  total: number;
  correctByType: Map<string, number>;
  totalByType: Map<string, number>;
  flops: number;
  prefillMs: number;
}

/** `ficoco eval`: accuracy of every method and budget on an evaluation set. */
export async function evalCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs('eval', { args, options: EVAL_OPTIONS });
  if (values.help) {
    process.stdout.write(EVAL_USAGE);
    return 0;
  }
  if (!values.data)
    throw new FicocoError(
      '--data FILE.jsonl is required: the questions and answers to score (see `ficoco eval --help`).',
      'input',
    );
  const modelDir = modelDirArg(values.model);
  // As given, or the built-in model's folder from here.
  const model = values.model ?? path.relative(process.cwd(), modelDir);
  const items = readEvalSet(values.data).slice(
    0,
    values.limit === undefined ? undefined : integer('--limit', values.limit, 1),
  );
  const methods = methodsArg(values.methods);
  const givenBudgets = values.budgets === undefined ? undefined : budgetsArg(values.budgets);
  const params = paramArgs(values.param);
  for (const method of methods) resolveParams(findMethod(method), params);
  const maxNewTokens = integer('--max-new-tokens', values['max-new-tokens'], 1);
  const quantization = quantizationArg(values.quantize);
  const provider = providerArg(values.provider);
  const threads = threadsArg(values.threads);
  // Where the report goes is checked now, not after the whole run.
  const out = outputFolderArg('--out', values.out);
  const name = outputNameArg(
    values.name ?? `eval-${path.basename(path.resolve(model))}${quantization === 'none' ? '' : `-${quantization}`}`,
  );
  const engine = await LlavaEngine.load(modelDir, {
    quantization,
    onQuantizing: quantizingOnStderr(quantization),
    provider,
    ...(threads !== undefined ? { threads } : {}),
  });
  // 64, 32 and 16 of LLaVA-1.5's 576 tokens; a tiled model's images bring tokens by their size, so the same shares.
  const budgets = givenBudgets ?? budgetsArg(engine.config.tiling ? '11%,5.6%,2.8%' : '64,32,16');
  try {
    checkReductions(engine, methods, budgets, params, await evalImageSizes(items));
    const types = [...new Set(items.map((item) => item.type))].sort();
    const header =
      `# ${name}\n\nModel ${model}${engine.quantizedWeights ? ` (weights ${engine.quantizedWeights})` : ''}, ${items.length} items of ${values.data}; greedy answers of at most ${maxNewTokens} tokens; ` +
      `an answer is right when it starts with the expected words. FLOPs are analytic prefill FLOPs ` +
      `(src/flops); prefill ms is measured vision + LLM prefill. ${machineLine(engine.provider, engine.threads)}\n\n`;
    const settings = 1 + methods.length * budgets.length;
    // The report is rewritten after every setting, whole or not at all: a run stopped (Ctrl+C) or failed keeps the
    // settings it finished, marked as partial, and never leaves a half-written file.
    const report = async (rows: EvalRow[]) => {
      const table = reportTable(rows, types) + '\n\n' + baselineTable(items, types);
      fs.mkdirSync(out, { recursive: true });
      await writeFileAtomically(
        path.join(out, `${name}.md`),
        header + partialNote(rows.length, settings, 'settings') + table + '\n',
      );
      await writeFileAtomically(path.join(out, `${name}.svg`), accuracyChart(rows, name));
      return table;
    };
    const rows: EvalRow[] = [];
    const run = async (method: MethodRun, budget: Budget | undefined) => {
      const row = await evaluate(engine, items, method, budget, maxNewTokens);
      rows.push(row);
      process.stderr.write(
        `${row.method} ${row.budget}: ${percent(row.correct, row.total)} % right (${row.correct} of ${row.total} ` +
          `answers); setting ${rows.length} of ${settings}\n`,
      );
      return await report(rows);
    };
    let table = await run({ method: 'none', params: {} }, undefined);
    for (const method of methods) for (const budget of budgets) table = await run({ method, params }, budget);
    process.stdout.write(table + `\n\nwrote ${path.join(out, `${name}.md`)} and ${name}.svg\n`);
  } finally {
    await engine.dispose();
  }
  return 0;
}

/** A method with the parameters given on the command line; its rows read "ficoco-v penalty=1". */
export interface MethodRun {
  method: string;
  params: Record<string, ParamValue>;
}

/** Answers every item with `run` at `budget` (undefined: unreduced) and scores the answers. */
export async function evaluate(
  engine: LlavaEngine,
  items: EvalItem[],
  run: MethodRun,
  budget: Budget | undefined,
  maxNewTokens: number,
): Promise<EvalRow> {
  const reduction = budget && { method: run.method, budget, params: run.params };
  const row: EvalRow = {
    method: [run.method, ...Object.entries(run.params).map(([name, value]) => `${name}=${value}`)].join(' '),
    budget: budget ? budgetLabel(budget) : 'all',
    keptTokens: 0,
    correct: 0,
    total: 0,
    correctByType: new Map(),
    totalByType: new Map(),
    flops: 0,
    prefillMs: 0,
  };
  const pixelsOf = new Map<string, ImagePixels>();
  for (const item of items) {
    if (!pixelsOf.has(item.image))
      pixelsOf.set(item.image, await engine.pixelValues(fs.readFileSync(item.image), path.basename(item.image)));
    const ids = engine.text.encode(
      await engine.text.renderPrompt([
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: item.question }] },
      ]),
    );
    const pixels = pixelsOf.get(item.image)!;
    const result = await engine.generate(ids, [pixels], {
      maxNewTokens,
      hooks: reduction ? engine.reductionHooks(reduction, [pixels.size]) : [],
    });
    const answer = engine.text.decode(result.tokenIds.filter((id) => !engine.text.stopTokenIds.includes(id)));
    const right = answerMatches(answer, item.answer) ? 1 : 0;
    row.correct += right;
    row.total += 1;
    row.correctByType.set(item.type, (row.correctByType.get(item.type) ?? 0) + right);
    row.totalByType.set(item.type, (row.totalByType.get(item.type) ?? 0) + 1);
    row.keptTokens += keptVisualTokens(result);
    row.flops += result.flops.run.total;
    row.prefillMs += result.timings.visionMs + result.timings.prefillMs;
  }
  return {
    ...row,
    keptTokens: row.keptTokens / row.total,
    flops: row.flops / row.total,
    prefillMs: row.prefillMs / row.total,
  };
}

function percent(correct: number, total: number): string {
  return total === 0 ? '–' : `${((100 * correct) / total).toFixed(1)}`;
}

function reportTable(rows: EvalRow[], types: string[]): string {
  const header = [
    'method',
    'budget',
    'visual tokens kept',
    'accuracy %',
    'of full-token %',
    ...types.map((t) => `${t} %`),
    'GFLOPs',
    'prefill ms',
  ];
  const full = rows[0].correct / rows[0].total;
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`,
    ...rows.map(
      (r) =>
        `| ${[
          r.method,
          r.budget,
          r.keptTokens.toFixed(1),
          percent(r.correct, r.total),
          full === 0 ? '–' : ((100 * r.correct) / r.total / full).toFixed(1),
          ...types.map((t) => percent(r.correctByType.get(t) ?? 0, r.totalByType.get(t) ?? 0)),
          (r.flops / 1e9).toFixed(3),
          r.prefillMs.toFixed(1),
        ].join(' | ')} |`,
    ),
  ].join('\n');
}

/**
 * What answering without the image scores, from the set itself: a uniform guess among the answers a question
 * type has in the set, and always giving the type's most common answer.
 */
function baselineTable(items: EvalItem[], types: string[]): string {
  const answersByType = new Map<string, Map<string, number>>();
  for (const item of items) {
    const answers = answersByType.get(item.type) ?? new Map<string, number>();
    // Answers are counted as they are scored: "Red." and "red" are one answer.
    const answer = answerWords(item.answer).join(' ');
    answers.set(answer, (answers.get(answer) ?? 0) + 1);
    answersByType.set(item.type, answers);
  }
  const uniform = (t: string) => 1 / answersByType.get(t)!.size;
  const majority = (t: string) => Math.max(...answersByType.get(t)!.values());
  const count = (t: string) => items.filter((item) => item.type === t).length;
  const row = (name: string, overall: number, perType: (t: string) => number) =>
    `| ${[name, (100 * overall).toFixed(1), ...types.map((t) => (100 * perType(t)).toFixed(1))].join(' | ')} |`;
  return [
    `| baseline without the image | accuracy % | ${types.map((t) => `${t} %`).join(' | ')} |`,
    `|---|${types.map(() => '---:').join('|')}|---:|`,
    row(
      "uniform guess among the type's answers",
      items.reduce((sum, item) => sum + uniform(item.type), 0) / items.length,
      uniform,
    ),
    row(
      "the type's most common answer",
      types.reduce((sum, t) => sum + majority(t), 0) / items.length,
      (t) => majority(t) / count(t),
    ),
  ].join('\n');
}

function accuracyChart(rows: EvalRow[], title: string): string {
  const baseline = rows[0];
  const methods = [...new Set(rows.slice(1).map((r) => r.method))];
  return lineChartSvg({
    title: `${title}: accuracy vs visual tokens kept`,
    xLabel: 'visual tokens kept per image',
    yLabel: 'accuracy (%)',
    yRange: [0, 100],
    series: methods.map((method) => ({
      name: method,
      points: [...rows.filter((r) => r.method === method), baseline].map(
        (r) => [r.keptTokens, (100 * r.correct) / r.total] as [number, number],
      ),
    })),
  });
}
