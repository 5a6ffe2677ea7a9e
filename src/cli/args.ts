import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs, ParseArgsConfig } from 'node:util';
import { formatBytes } from '../common/bytes';
import { MAX_IMAGE_BYTES } from '../common/imageFile';
import { FicocoError } from '../common/errors';
import { PROVIDERS, ProviderSetting } from '../engine/runtime/provider';
import { WEIGHT_QUANTIZATIONS, WeightQuantization, passesQuarter, quantizingProgress } from '../common/quantization';
import { BUDGET_HINT, Budget, ParamValue, parseBudget } from '../common/budget';
import { AUTO_METHOD, NO_REDUCTION } from '../common/reductionChoice';
import { type PrefillProgress, prefillProgressLabel } from '../common/prefillProgress';

/**
 * node:util's parseArgs for one command, with what users meet fixed: a negative number after an option that takes a
 * value is its value (`--budget -5` is then refused for what it is), and a parse error is one line that names the
 * command's --help instead of a stack trace or the whole usage.
 */
export function parseCommandArgs<T extends ParseArgsConfig>(
  command: string,
  config: T,
): ReturnType<typeof parseArgs<T>> {
  const takesValue = new Set(
    Object.entries(config.options ?? {}).flatMap(([name, option]) => (option.type === 'string' ? [`--${name}`] : [])),
  );
  const args: string[] = [];
  const given = config.args ?? [];
  for (let i = 0; i < given.length; i++) {
    const joinNext = takesValue.has(given[i]) && /^-[\d.]/.test(given[i + 1] ?? '');
    args.push(joinNext ? `${given[i]}=${given[++i]}` : given[i]);
  }
  try {
    return parseArgs({ ...config, args } as T);
  } catch (error) {
    if (!(error instanceof TypeError && String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')))
      throw error;
    // Node's first sentence says what is wrong; its advice on `--` and positionals only confuses here.
    const firstSentence = error.message.split(/(?<=\.)\s/)[0].replace(/\.?$/, '.');
    throw new FicocoError(`${firstSentence} See \`ficoco ${command} --help\`.`, 'input');
  }
}

export function number(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < min)
    throw new FicocoError(`${flag} ${text} is not a number ≥ ${min}.`, 'input');
  return value;
}

export function integer(flag: string, text: string, min: number): number {
  const value = number(flag, text, min);
  if (!Number.isInteger(value)) throw new FicocoError(`${flag} ${text} is not a whole number.`, 'input');
  return value;
}

/** --budget in the one budget grammar (src/common/budget.ts): "64" tokens, "25%" or "0.25" a share. */
export function budgetArg(text: string): Budget {
  const budget = parseBudget(text);
  if (!budget) throw new FicocoError(`--budget ${text} must be ${BUDGET_HINT}.`, 'input');
  return budget;
}

/** --budgets: a comma-separated list of budgets in the same grammar. */
export function budgetsArg(text: string): Budget[] {
  return text.split(',').map((budget) => budgetArg(budget.trim()));
}

/**
 * --method, --budget and --param as the engine's reduction request: undefined for none (or no --method), `auto` without a
 * budget, any other method with one.
 */
export function reductionArg(
  method: string | undefined,
  budget: string | undefined,
  params: readonly string[] | undefined,
): { method: string; budget?: Budget; params: Record<string, ParamValue> } | undefined {
  const choosing = method === AUTO_METHOD || method === NO_REDUCTION;
  if (method !== undefined && !choosing && budget === undefined)
    throw new FicocoError(`--method ${method} needs --budget: e.g. --method ficoco-v --budget 64.`, 'input');
  if (budget !== undefined && method === undefined)
    throw new FicocoError('--budget needs --method NAME (see `ficoco methods`).', 'input');
  if (budget !== undefined && choosing)
    throw new FicocoError(
      method === AUTO_METHOD
        ? '--method auto chooses its own budget; leave out --budget.'
        : '--method none keeps every visual token; leave out --budget.',
      'input',
    );
  if (method === undefined || method === NO_REDUCTION) return undefined;
  return { method, ...(budget === undefined ? {} : { budget: budgetArg(budget) }), params: paramArgs(params) };
}

/** --param name=value pairs; numbers and true/false are typed, anything else stays text. */
export function paramArgs(pairs: readonly string[] = []): Record<string, ParamValue> {
  const params: Record<string, ParamValue> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0)
      throw new FicocoError(`--param ${pair} must look like name=value (e.g. --param epsilon=0.996).`, 'input');
    const raw = pair.slice(eq + 1);
    params[pair.slice(0, eq)] =
      raw === 'true'
        ? true
        : raw === 'false'
          ? false
          : raw.trim() !== '' && Number.isFinite(Number(raw))
            ? Number(raw)
            : raw;
  }
  return params;
}

/** --quantize: none, int8 or int4 (the decoder's linear layers and output head; on the CPU the vision tower's too). */
export function quantizationArg(value: string | undefined): WeightQuantization {
  if (value === undefined) return 'none';
  if (!(WEIGHT_QUANTIZATIONS as readonly string[]).includes(value))
    throw new FicocoError(`--quantize ${value} is not known; use ${WEIGHT_QUANTIZATIONS.join(', ')}.`, 'input');
  return value as WeightQuantization;
}

/**
 * How ask and eval show a first quantized load (minutes for a 7B model): a line on stderr at each quarter of the
 * layers; undefined without quantization. (serve's engine clients log the same lines.)
 */
export function quantizingOnStderr(mode: WeightQuantization): ((done: number, total: number) => void) | undefined {
  if (mode === 'none') return undefined;
  return (done, total) => {
    if (passesQuarter(done, total)) process.stderr.write(`${quantizingProgress(mode, done, total)}\n`);
  };
}

/**
 * How ask shows a long prefill (a screenshot's tiles on a CPU): one line on a terminal's stderr, rewritten after each
 * tower pass and prompt chunk and erased once the answer starts; nothing when stderr is not a terminal.
 */
export function prefillOnTerminal(stderr: Pick<NodeJS.WriteStream, 'isTTY' | 'write'>): {
  show?: (progress: PrefillProgress) => void;
  erase(): void;
} {
  if (!stderr.isTTY) return { erase: () => undefined };
  let shown = false;
  return {
    show: (progress) => {
      shown = true;
      stderr.write(`\r\x1b[K${prefillProgressLabel(progress)}`);
    },
    erase: () => {
      if (shown) stderr.write('\r\x1b[K');
      shown = false;
    },
  };
}

/** --provider: auto or one of the execution providers. */
export function providerArg(value: string): ProviderSetting {
  if (value !== 'auto' && !(PROVIDERS as readonly string[]).includes(value))
    throw new FicocoError(`--provider ${value} is not known; use auto, ${PROVIDERS.join(', ')}.`, 'input');
  return value as ProviderSetting;
}

/** An --image file's bytes, after checking it is a file of at most MAX_IMAGE_BYTES. */
export function readImageArg(file: string): { bytes: Buffer; name: string } {
  let stats: fs.Stats;
  try {
    stats = fs.statSync(file);
  } catch {
    throw new FicocoError(`--image ${file} does not exist.`, 'image');
  }
  if (!stats.isFile()) throw new FicocoError(`--image ${file} is a folder, not an image file.`, 'image');
  if (stats.size > MAX_IMAGE_BYTES)
    throw new FicocoError(
      `--image ${file} is ${formatBytes(stats.size)}; FiCoCo takes image files up to ${formatBytes(MAX_IMAGE_BYTES)}.`,
      'image',
    );
  return { bytes: fs.readFileSync(file), name: path.basename(file) };
}

/** The screenshot size tiled models are measured at when no --image-size is given. */
export const DEFAULT_IMAGE_SIZE = '1920x1080';

/** --image-size "1920x1080" → width 1920, height 1080. */
export function imageSizeArg(text: string): { width: number; height: number } {
  const match = /^(\d+)[x×](\d+)$/.exec(text.trim());
  const [width, height] = match ? [Number(match[1]), Number(match[2])] : [0, 0];
  if (!(width >= 1 && height >= 1 && width <= 65535 && height <= 65535))
    throw new FicocoError(`--image-size ${text} must be WIDTHxHEIGHT in pixels, e.g. 1920x1080.`, 'input');
  return { width, height };
}
