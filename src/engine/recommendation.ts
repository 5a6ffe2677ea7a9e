/**
 * The reduction `auto` stands for, per model: the model folder's own measured recommendation (written by
 * `ficoco tune`), else the setting published for the model's architecture, else FiCoCo-V at 11 %. The file is
 * read like any file in a model folder — bounded, validated, and ignored with a reason when it is not usable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Budget, ParamValue, parseBudget, readableBudget } from '../common/budget';
import { FicocoError } from '../common/errors';
import { NO_REDUCTION, ReductionRule } from '../common/reductionChoice';
import type { ModelShape } from '../reduction/method';
import { planReduction } from '../reduction/registry';

/** The file `ficoco tune` writes into a model folder. */
export const RECOMMENDATION_FILE = 'ficoco-recommendation.json';
const RECOMMENDATION_FORMAT = 1;
/** A recommendation is a few kilobytes; anything far larger is not one. */
const MAX_RECOMMENDATION_BYTES = 1 << 20;

/** FiCoCo's fallback: FiCoCo-V keeping 11 % of the visual tokens (63 of LLaVA-1.5's 576; the published 64 is its own rule). */
const DEFAULT_REDUCTION = { method: 'ficoco-v', budget: { ratio: 0.11 } } as const;

/** One setting `ficoco tune` measured. */
export interface TunedSetting {
  method: string;
  /** "64", "11%", or "all" for the unreduced model */
  budget: string;
  /** visual tokens left at the decoder's last reduction step, mean over the items */
  keptTokens: number;
  /** share of the items answered right */
  accuracy: number;
  /** median paired prefill speedup against the unreduced model (1 for the unreduced row) */
  speedup: number;
}

/** What `ficoco tune` writes: the chosen setting, the evidence, and the table it chose from. */
export interface Recommendation {
  format: typeof RECOMMENDATION_FORMAT;
  method: string;
  budget: string;
  params: Record<string, ParamValue>;
  /** the share of full-token accuracy a setting had to keep */
  bar: number;
  fullAccuracy: number;
  accuracy: number;
  speedup: number;
  /** the evaluation set, and how many of its items were answered */
  data: { file: string; items: number };
  provider: string;
  machine: string;
  measuredAt: string;
  command: string[];
  table: TunedSetting[];
}

/** The reduction an answer uses, and which rule chose it. */
export interface ReductionChoice {
  /** a registry method, or 'none' (a model for which no reduction keeps its accuracy and is faster) */
  method: string;
  budget: Budget;
  params: Record<string, ParamValue>;
  rule: ReductionRule;
  /** the rule in a sentence, with its evidence */
  why: string;
}

/** A setting published for an architecture (a paper's main result), which a model family may name. */
export interface PublishedReduction {
  method: string;
  budget: Budget;
  /** where it was published and for which model */
  source: string;
}

/** Writes a recommendation (a model folder's RECOMMENDATION_FILE, or elsewhere to inspect it first). */
export function writeRecommendation(file: string, recommendation: Omit<Recommendation, 'format'>): void {
  fs.writeFileSync(file, `${JSON.stringify({ format: RECOMMENDATION_FORMAT, ...recommendation }, null, 1)}\n`);
}

/**
 * What `auto` means for a model: its recommendation file when it is usable for `shape`, else `published`, else the
 * default. A file that cannot be used is named in `why`, so the user learns why the fallback ran.
 */
export function chooseReduction(
  modelDir: string,
  shape: ModelShape,
  published: PublishedReduction | undefined,
): ReductionChoice {
  let problem = '';
  try {
    const recommended = readRecommendation(modelDir, shape);
    if (recommended) return recommended;
  } catch (error) {
    problem = `${error instanceof Error ? error.message : String(error)} `;
  }
  if (published)
    return {
      method: published.method,
      budget: published.budget,
      params: {},
      rule: 'published',
      why: `${problem}Published for this model: ${published.source}.`,
    };
  return {
    ...DEFAULT_REDUCTION,
    params: {},
    rule: 'default',
    why:
      `${problem}FiCoCo's default (${DEFAULT_REDUCTION.method} at ${readableBudget(DEFAULT_REDUCTION.budget)}): ` +
      `nothing was measured or published for this model; \`ficoco tune\` measures it.`,
  };
}

/** The model folder's recommendation as a choice; undefined when there is none; throws when it cannot be used. */
function readRecommendation(modelDir: string, shape: ModelShape): ReductionChoice | undefined {
  const file = path.join(modelDir, RECOMMENDATION_FILE);
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(file);
  } catch {
    return undefined;
  }
  const unusable = (reason: string) =>
    new FicocoError(`${RECOMMENDATION_FILE} in the model folder was ignored: ${reason}.`, 'config');
  if (!stat.isFile()) throw unusable('it is not a plain file');
  if (stat.size > MAX_RECOMMENDATION_BYTES) throw unusable(`it is ${stat.size} bytes, more than a recommendation is`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw unusable(`it is not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const recommendation = parseRecommendation(json, unusable);
  const budget = parseBudget(recommendation.budget);
  if (recommendation.method !== NO_REDUCTION) {
    if (!budget) throw unusable(`its budget "${recommendation.budget}" is not a budget`);
    try {
      planReduction(recommendation.method, budget, shape, recommendation.params);
    } catch (error) {
      throw unusable(error instanceof Error ? error.message.replace(/\.$/, '') : String(error));
    }
  }
  const evidence =
    `${(100 * recommendation.accuracy).toFixed(1)} % accuracy against ${(100 * recommendation.fullAccuracy).toFixed(1)} % ` +
    `with every token on ${recommendation.data.items} items of ${path.basename(recommendation.data.file)}, ` +
    `${recommendation.speedup.toFixed(2)}× prefill speedup on ${recommendation.provider} (${recommendation.measuredAt.slice(0, 10)})`;
  return {
    method: recommendation.method,
    budget: budget ?? { ratio: 1 },
    params: recommendation.params,
    rule: 'model',
    why:
      recommendation.method === NO_REDUCTION
        ? `Measured for this model (ficoco tune): no method and budget kept ${Math.round(100 * recommendation.bar)} % ` +
          `of full-token accuracy while being measurably faster, so every token is used.`
        : `Measured for this model (ficoco tune): the fastest setting keeping ${Math.round(100 * recommendation.bar)} % ` +
          `of full-token accuracy — ${evidence}.`,
  };
}

/** The fields a choice needs, checked; the rest of the file (its table) is for people. */
function parseRecommendation(json: unknown, unusable: (reason: string) => Error): Recommendation {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw unusable('it is not a JSON object');
  const r = json as Record<string, unknown>;
  if (r.format !== RECOMMENDATION_FORMAT)
    throw unusable(`its format is ${JSON.stringify(r.format)}; this version reads format ${RECOMMENDATION_FORMAT}`);
  const share = (name: string) => {
    const value = r[name];
    if (typeof value !== 'number' || !(value >= 0 && value <= 1)) throw unusable(`${name} is not a share in [0, 1]`);
    return value;
  };
  const text = (name: string, value: unknown) => {
    if (typeof value !== 'string' || value === '') throw unusable(`${name} is not text`);
    return value;
  };
  const params = r.params ?? {};
  if (typeof params !== 'object' || params === null || Array.isArray(params)) throw unusable('params is not an object');
  const data = r.data as Record<string, unknown> | undefined;
  const items = data?.items;
  if (typeof items !== 'number' || !Number.isSafeInteger(items) || items < 1)
    throw unusable('data.items is not a count');
  const speedup = r.speedup;
  if (typeof speedup !== 'number' || !(speedup > 0) || !Number.isFinite(speedup))
    throw unusable('speedup is not a positive number');
  return {
    format: RECOMMENDATION_FORMAT,
    method: text('method', r.method),
    budget: text('budget', r.budget),
    params: params as Record<string, ParamValue>,
    bar: share('bar'),
    fullAccuracy: share('fullAccuracy'),
    accuracy: share('accuracy'),
    speedup,
    data: { file: text('data.file', data?.file), items },
    provider: text('provider', r.provider),
    machine: typeof r.machine === 'string' ? r.machine : '',
    measuredAt: text('measuredAt', r.measuredAt),
    command: Array.isArray(r.command) ? r.command.filter((part): part is string => typeof part === 'string') : [],
    table: Array.isArray(r.table) ? (r.table as TunedSetting[]) : [],
  };
}
