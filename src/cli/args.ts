import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs, ParseArgsConfig } from 'node:util';
import { MAX_IMAGE_BYTES, imageFileTooLarge } from '../common/imageFile';
import { UnreadableFileError, readRegularFile } from '../common/boundedFile';
import { FicocoError } from '../common/errors';
import { PROVIDERS, ProviderSetting } from '../engine/runtime/provider';
import { WEIGHT_QUANTIZATIONS, WeightQuantization, passesQuarter, quantizingProgress } from '../common/quantization';
import { BUDGET_HINT, Budget, ParamValue, budgetLabel, parseBudget } from '../common/budget';
import { AUTO_METHOD, NO_REDUCTION } from '../common/reductionChoice';
import { METHODS, findMethod, nameLike } from '../reduction/registry';
import { type PrefillProgress, prefillProgressLabel } from '../common/prefillProgress';

/** A command's options, as parseArgs takes them (@types/node does not export its name for them). */
export type CommandOptions = NonNullable<ParseArgsConfig['options']>;

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
  // -h is --help wherever a command has --help.
  const options = Object.fromEntries(
    Object.entries(config.options ?? {}).map(([name, option]) => [
      name,
      name === 'help' ? { ...option, short: 'h' } : option,
    ]),
  );
  const args: string[] = [];
  const given = config.args ?? [];
  for (let i = 0; i < given.length; i++) {
    const joinNext = takesValue.has(given[i]) && /^-[\d.]/.test(given[i + 1] ?? '');
    args.push(joinNext ? `${given[i]}=${given[++i]}` : given[i]);
  }
  try {
    return parseArgs({ ...config, options, args } as T);
  } catch (error) {
    if (!(error instanceof TypeError && String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')))
      throw error;
    // Node's first sentence says what is wrong; its advice on `--` and positionals only confuses here.
    const firstSentence = error.message.split(/(?<=\.)\s/)[0].replace(/\.?$/, '.');
    throw new FicocoError(`${firstSentence} See \`ficoco ${command} --help\`.`, 'input');
  }
}

export function number(flag: string, text: string, min: number, max = Infinity): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < min || value > max)
    throw new FicocoError(
      `${flag} ${text} is not a number ${max === Infinity ? `≥ ${min}` : `from ${min} to ${max}`}.`,
      'input',
    );
  return value;
}

export function integer(flag: string, text: string, min: number, max = Infinity): number {
  const value = number(flag, text, min, max);
  if (!Number.isInteger(value)) throw new FicocoError(`${flag} ${text} is not a whole number.`, 'input');
  return value;
}

/** Most intra-op threads, as the ficoco.threads setting allows: ONNX Runtime starts every one of them. */
export const MAX_THREADS = 256;

/** --threads: ONNX Runtime's intra-op threads, 1 to MAX_THREADS; undefined (its default) when not given. */
export function threadsArg(text: string | undefined): number | undefined {
  return text === undefined ? undefined : integer('--threads', text, 1, MAX_THREADS);
}

/**
 * A budget in the one budget grammar (src/common/budget.ts): "64" tokens, "25%" or "0.25" a share; `flag` is the
 * option it came from (--budget, or --budgets for one entry of a list), named in the error.
 */
export function budgetArg(text: string, flag = '--budget'): Budget {
  const budget = parseBudget(text);
  if (!budget) throw new FicocoError(`${flag} ${text} must be ${BUDGET_HINT}.`, 'input');
  return budget;
}

/**
 * The entries of a comma-separated list option, trimmed; an empty entry or one given twice is refused, not run
 * twice (or as nothing) after the model has loaded. `key` says when two entries are the same (25% and 0.25).
 */
function listArg<T>(flag: string, text: string, parse: (entry: string) => T, key: (value: T) => string): T[] {
  const seen = new Map<string, string>();
  return text.split(',').map((raw) => {
    const entry = raw.trim();
    if (entry === '')
      throw new FicocoError(`${flag} ${text} has an empty entry: separate them with one comma.`, 'input');
    const value = parse(entry);
    const earlier = seen.get(key(value));
    if (earlier !== undefined)
      throw new FicocoError(
        `${flag} ${text} names ${earlier === entry ? `${entry} twice` : `the same one twice (${earlier} and ${entry})`}: ` +
          'give each once.',
        'input',
      );
    seen.set(key(value), entry);
    return value;
  });
}

/**
 * --budgets: a comma-separated list of budgets in the same grammar (or `parse`'s), each once. Two with one label (25%
 * and 0.25, 5.6% and 0.056) are one budget: their rows would read the same.
 */
export function budgetsArg(text: string, parse = (entry: string) => budgetArg(entry, '--budgets')): Budget[] {
  return listArg('--budgets', text, parse, budgetLabel);
}

/**
 * A --budgets entry above the visual tokens `image` ("an image", "a 1920 × 1080 image") brings. A list has no
 * reduction to turn off, as the chat's and `ask`'s refusal says: the unreduced model is measured anyway.
 */
export function budgetAboveTokens(budget: number, tokens: number, image: string): FicocoError {
  return new FicocoError(
    `--budgets ${budget} is more than the ${tokens} visual tokens this model gives ${image}: give budgets of at ` +
      `most ${tokens}, or shares such as 25%.`,
    'reduction',
  );
}

/** --methods: all, or a comma-separated list of reduction methods, each once. */
export function methodsArg(text: string): string[] {
  if (text.trim() === 'all') return METHODS.map((method) => method.name);
  return listArg(
    '--methods',
    text,
    (name) => findMethod(name).name,
    (name) => name,
  );
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
  // A misspelt name is said first: asking for a budget it would not use sends the user the wrong way.
  if (method !== undefined && !choosing && !METHODS.some((known) => known.name === method)) {
    const methodNames = METHODS.map((known) => known.name);
    const meant = nameLike(method, [AUTO_METHOD, NO_REDUCTION, ...methodNames]);
    throw new FicocoError(
      meant
        ? `--method ${method} is not a reduction method: did you mean --method ${meant}?`
        : `--method ${method} is not a reduction method: use ${AUTO_METHOD}, ${NO_REDUCTION} or one of ` +
            `${methodNames.join(', ')} (\`ficoco methods\` says what each does).`,
      'input',
    );
  }
  if (method !== undefined && !choosing && budget === undefined)
    throw new FicocoError(`--method ${method} needs --budget: e.g. --method ficoco-v --budget 64.`, 'input');
  // A budget or parameters nothing would use are refused, not silently dropped.
  const given = budget !== undefined ? '--budget' : params?.length ? '--param' : undefined;
  if (given && method === undefined)
    throw new FicocoError(`${given} needs --method NAME (see \`ficoco methods\`).`, 'input');
  if (given && choosing)
    throw new FicocoError(
      method === AUTO_METHOD
        ? '--method auto chooses its own budget and parameters: leave out --budget and --param.'
        : '--method none keeps every visual token: leave out --budget and --param.',
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

/**
 * An --image file's bytes, after checking it (checkImageArg); `what` names it in errors. It is read as readRegularFile
 * reads: checked again on the handle, never past MAX_IMAGE_BYTES (it may have been swapped for a pipe or have grown).
 */
export function readImageArg(file: string, what = '--image'): { bytes: Buffer; name: string } {
  checkImageArg(file, what);
  try {
    return { bytes: readRegularFile(file, MAX_IMAGE_BYTES), name: path.basename(file) };
  } catch (error) {
    if (!(error instanceof UnreadableFileError)) throw error;
    if (error.reason === 'too-large') throw tooLarge(what, file, error.size);
    throw new FicocoError(`${what} ${file} is not a regular file.`, 'image');
  }
}

function tooLarge(what: string, file: string, bytes: number): FicocoError {
  return new FicocoError(imageFileTooLarge(`${what} ${file}`, bytes), 'image');
}

/** Checks that an image file is a regular file of at most MAX_IMAGE_BYTES; `what` names it in errors. */
export function checkImageArg(file: string, what = '--image'): void {
  let stats: fs.Stats;
  try {
    stats = fs.statSync(file);
  } catch {
    throw new FicocoError(`${what} ${file} does not exist.`, 'image');
  }
  if (stats.isDirectory()) throw new FicocoError(`${what} ${file} is a folder, not an image file.`, 'image');
  // A FIFO or a device (/dev/zero) has no size, and reading it may never end.
  if (!stats.isFile()) throw new FicocoError(`${what} ${file} is not a regular file.`, 'image');
  if (stats.size > MAX_IMAGE_BYTES) throw tooLarge(what, file, stats.size);
}

/** A folder written into after a long run, checked before it: the nearest existing part of its path is a folder. */
export function outputFolderArg(flag: string, folder: string): string {
  let existing = path.resolve(folder);
  while (!fs.existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  if (fs.existsSync(existing) && !fs.statSync(existing).isDirectory())
    throw new FicocoError(
      `${flag} ${folder}${existing === path.resolve(folder) ? '' : `: ${existing}`} is not a folder.`,
      'input',
    );
  return folder;
}

/** A file written at the end of a run, checked before it: not a folder, in a folder that exists. */
export function outputFileArg(flag: string, file: string): string {
  if (fs.existsSync(file) && fs.statSync(file).isDirectory())
    throw new FicocoError(`${flag} ${file} is a folder; give the file to write.`, 'input');
  const folder = path.dirname(path.resolve(file));
  if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory())
    throw new FicocoError(`${flag} ${file}: ${folder} is not an existing folder.`, 'input');
  return file;
}

/** --name: the stem of the files written into the output folder, so a name without a folder of its own. */
export function outputNameArg(name: string): string {
  if (name === '' || name === '.' || name === '..' || path.basename(name) !== name)
    throw new FicocoError(`--name ${name} must be a file name without a folder; --out says where it goes.`, 'input');
  return name;
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
