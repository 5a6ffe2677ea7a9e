import * as fs from 'node:fs';
import * as path from 'node:path';
import { Budget, budgetLabel } from '../common/budget';
import { FicocoError } from '../common/errors';
import { NO_REDUCTION } from '../common/reductionChoice';
import { LlavaEngine } from '../engine/engine';
import { RECOMMENDATION_FILE, TunedSetting, writeRecommendation } from '../engine/recommendation';
import {
  budgetsArg,
  integer,
  methodsArg,
  number,
  outputFileArg,
  parseCommandArgs,
  providerArg,
  threadsArg,
  CommandOptions,
} from './args';
import { Prompt, checkReductions, machineLine, measureMethod } from './benchTiming';
import { evaluate } from './eval';
import { EvalItem, evalImageSizes, readEvalSet } from './evalSet';
import { modelDirArg } from './models';

export const TUNE_USAGE = `Usage:
  ficoco tune [--model DIR] --data FILE.jsonl [--keep 0.95] [--methods all|a,b] [--budgets 128,96,64]
              [--limit N] [--runs 7] [--max-new-tokens 8] [--provider NAME] [--threads N] [--out FILE]

Finds the fastest reduction that keeps --keep (default 0.95) of the model's full-token accuracy on an
evaluation set: every method at every budget answers the set as in \`ficoco eval\` and is timed as in
\`ficoco bench\` (--runs rounds of paired warm prefills against the unreduced model, on the set's first
item; medians). A reduction must be at least 5 % faster than the unreduced model to be chosen over it.
Writes the choice, its evidence and the table it chose from to the model folder's ${RECOMMENDATION_FILE}
(or --out), which \`--method auto\` and the extension's ficoco.reduction.method auto then use, and prints
the table. Budgets default to eight ninths down to one ninth of the model's visual tokens; on a model that reads
an image in tiles (LLaVA-NeXT, LLaVA-OneVision), to the same shares of each image (89% … 11%).
`;

export const TUNE_OPTIONS = {
  model: { type: 'string' },
  data: { type: 'string' },
  keep: { type: 'string', default: '0.95' },
  methods: { type: 'string', default: 'all' },
  budgets: { type: 'string' },
  limit: { type: 'string' },
  runs: { type: 'string', default: '7' },
  'max-new-tokens': { type: 'string', default: '8' },
  provider: { type: 'string', default: 'cpu' },
  threads: { type: 'string' },
  out: { type: 'string' },
  help: { type: 'boolean' },
} satisfies CommandOptions;

/** A reduction must beat the unreduced model by this much (the usage says 5 %): below it is the machine's noise. */
const MIN_SPEEDUP = 1.05;

export async function tuneCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs('tune', { args, options: TUNE_OPTIONS });
  if (values.help) {
    process.stdout.write(TUNE_USAGE);
    return 0;
  }
  if (!values.data)
    throw new FicocoError(
      '--data FILE.jsonl is required: the questions and answers to score (see `ficoco tune --help`).',
      'input',
    );
  const modelDir = modelDirArg(values.model);
  const bar = number('--keep', values.keep, 0);
  // 0 would let any accuracy pass: tune would store the fastest method whatever it answers.
  if (bar === 0)
    throw new FicocoError(
      '--keep 0 accepts any accuracy, so tune would choose the fastest method whatever it answers: give the share of ' +
        'full-token accuracy to keep, above 0 (0.95 keeps 95 %).',
      'input',
    );
  if (bar > 1) throw new FicocoError(`--keep ${values.keep} is a share of full-token accuracy: at most 1.`, 'input');
  const methods = methodsArg(values.methods);
  const givenBudgets = values.budgets === undefined ? undefined : budgetsArg(values.budgets);
  const items = readEvalSet(values.data).slice(
    0,
    values.limit === undefined ? undefined : integer('--limit', values.limit, 1),
  );
  const runs = integer('--runs', values.runs, 1);
  const maxNewTokens = integer('--max-new-tokens', values['max-new-tokens'], 1);
  const load = {
    provider: providerArg(values.provider),
    threads: threadsArg(values.threads),
  };
  // Where the recommendation goes is checked now, not after the whole run.
  const file = path.resolve(outputFileArg('--out', values.out ?? path.join(modelDir, RECOMMENDATION_FILE)));
  const engine = await LlavaEngine.load(modelDir, load);
  // A second engine keeps the unreduced sessions for the paired timings (as `ficoco bench` does).
  const reference = await LlavaEngine.load(modelDir, load);
  try {
    const visualTokens = engine.reductionShape.visualTokens;
    // A tiled model's images come in tokens by their size: its budgets are shares of the image, not counts of a pass.
    const budgets: Budget[] =
      givenBudgets ??
      [8, 7, 6, 5, 4, 3, 2, 1].map((ninths) =>
        engine.config.tiling
          ? { ratio: Math.round((100 * ninths) / 9) / 100 }
          : { tokens: Math.round((visualTokens * ninths) / 9) },
      );
    checkReductions(engine, methods, budgets, {}, await evalImageSizes(items));
    const prompt = await promptOf(engine, items[0]);
    const full = await evaluate(engine, items, { method: NO_REDUCTION, params: {} }, undefined, maxNewTokens);
    const fullAccuracy = full.correct / full.total;
    const rows: TunedSetting[] = [
      { method: NO_REDUCTION, budget: 'all', keptTokens: full.keptTokens, accuracy: fullAccuracy, speedup: 1 },
    ];
    for (const method of methods) {
      const timed = await measureMethod(engine, reference, prompt, method, budgets, { runs, decode: 0, llmScale: 1 });
      for (const [i, budget] of budgets.entries()) {
        const scored = await evaluate(engine, items, { method, params: {} }, budget, maxNewTokens);
        const row = {
          method,
          budget: budgetLabel(budget),
          keptTokens: scored.keptTokens,
          accuracy: scored.correct / scored.total,
          speedup: timed.rows[i].pairedSpeedup,
        };
        rows.push(row);
        process.stderr.write(
          `${method} ${row.budget}: ${(100 * row.accuracy).toFixed(1)} % (${ofFull(row.accuracy, fullAccuracy)} % of full), ${row.speedup.toFixed(2)}×\n`,
        );
      }
    }
    const chosen = chooseSetting(rows, bar);
    writeRecommendation(file, {
      method: chosen.method,
      budget: chosen.budget,
      params: {},
      bar,
      fullAccuracy,
      accuracy: chosen.accuracy,
      speedup: chosen.speedup,
      data: { file: values.data, items: items.length },
      provider: engine.provider,
      machine: machineLine(engine.provider, engine.threads),
      measuredAt: new Date().toISOString(),
      command: ['ficoco', 'tune', ...args],
      table: rows,
    });
    process.stdout.write(
      [
        `# tune-${path.basename(modelDir)}`,
        '',
        `\`ficoco tune ${args.join(' ')}\``,
        '',
        `${modelDir}, ${items.length} items of ${values.data}; the bar: ${Math.round(100 * bar)} % of full-token ` +
          `accuracy (${(100 * bar * fullAccuracy).toFixed(1)} %). Speedups: median of ${runs} paired warm ` +
          `prefills of the first item's question against the unreduced model. ${machineLine(engine.provider, engine.threads)}`,
        '',
        `Chosen: **${chosen.method} ${chosen.budget}** — ${(100 * chosen.accuracy).toFixed(1)} % accuracy ` +
          `(${ofFull(chosen.accuracy, fullAccuracy)} % of full), ${chosen.speedup.toFixed(2)}× prefill; ` +
          `written to ${file}.`,
        '',
        ...tuneTable(rows, fullAccuracy * bar, chosen),
        '',
      ].join('\n'),
    );
  } finally {
    await engine.dispose();
    await reference.dispose();
  }
  return 0;
}

/**
 * The fastest setting whose accuracy keeps `bar` of the unreduced row's (the first); the unreduced model unless a
 * reduction is at least MIN_SPEEDUP faster.
 */
export function chooseSetting(rows: readonly TunedSetting[], bar: number): TunedSetting {
  const [unreduced] = rows;
  const keeping = rows.filter((row) => row.accuracy >= bar * unreduced.accuracy && row.speedup >= MIN_SPEEDUP);
  return keeping.reduce((best, row) => (row.speedup > best.speedup ? row : best), unreduced);
}

/** The question and image of an evaluation item as a prompt for timed prefills. */
async function promptOf(engine: LlavaEngine, item: EvalItem): Promise<Prompt> {
  const pixels = await engine.pixelValues(fs.readFileSync(item.image), path.basename(item.image));
  const ids = engine.text.encode(
    await engine.text.renderPrompt([
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: item.question }] },
    ]),
  );
  return { ids, pixels: [pixels] };
}

/** An accuracy as a percentage of the full-token one; "–" where that is 0 (a model that answers none of the set). */
function ofFull(accuracy: number, full: number): string {
  return full > 0 ? ((100 * accuracy) / full).toFixed(1) : '–';
}

function tuneTable(rows: readonly TunedSetting[], minAccuracy: number, chosen: TunedSetting): string[] {
  const full = rows[0].accuracy;
  return [
    '| method | budget | visual tokens kept | accuracy % | of full-token % | prefill speedup | keeps the bar |',
    '|---|---|---:|---:|---:|---:|---|',
    ...rows.map(
      (row) =>
        `| ${row === chosen ? `**${row.method}**` : row.method} | ${row.budget} | ${row.keptTokens.toFixed(1)} | ` +
        `${(100 * row.accuracy).toFixed(1)} | ${ofFull(row.accuracy, full)} | ` +
        `${row.speedup.toFixed(2)}× | ${row.accuracy >= minAccuracy ? 'yes' : 'no'} |`,
    ),
  ];
}
