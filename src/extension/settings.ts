/**
 * The `ficoco.*` settings: what package.json declares (built from the reduction registry, so every method's
 * parameters are settings) and what the extension reads back. Free of 'vscode': the reader takes a getter,
 * so validation is plainly testable. A bad value never stops a question: it is reported and its default used.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { NUMBER_LIST_PATTERN, ParamSpec } from '../reduction/method';
import { BUDGET_HINT, BUDGET_PATTERN, Budget, ParamValue, parseBudget } from '../common/budget';
import { METHODS, resolveParams } from '../reduction/registry';
import { DEFAULT_HUB_ENDPOINT } from '../hub/hubHttp';
import { WEIGHT_QUANTIZATIONS, WeightQuantization } from '../common/quantization';
import { LoadParams, MAX_SEED, PROVIDER_SETTINGS, ProviderSetting } from '../protocol/engine';
import { AUTO_METHOD, NO_REDUCTION, type ReductionRequest } from '../common/reductionChoice';

const MODEL_FILES = 'config.json, *.safetensors, tokenizer.json, tokenizer_config.json and preprocessor_config.json';

/** A failure the user can fix, with the setting that fixes it. */
export class SettingsError extends Error {
  constructor(
    message: string,
    readonly setting: string,
  ) {
    super(message);
  }
}

/** A value the reader replaced by its default, and the setting to open to fix it. */
export interface SettingProblem {
  setting: string;
  message: string;
}

export interface ReductionSetting {
  method: string;
  budget: Budget;
  /** the budget as the user wrote it, for labels ("16", "11%") */
  budgetLabel: string;
  params: Record<string, ParamValue>;
}

export interface FicocoSettings {
  /** an absolute folder, or '' for the built-in model */
  modelPath: string;
  /** 'local', or the base URL of an OpenAI-compatible server */
  engine: string;
  /** the model to ask on that server, as it lists it; '' for its only one */
  engineModel: string;
  provider: ProviderSetting;
  /** 0: ONNX Runtime's default */
  threads: number;
  /** ficoco.quantization, and the per-model choices that override it (keys: absolute model folders, normalized) */
  quantization: WeightQuantization;
  quantizationByModel: Record<string, WeightQuantization>;
  /** undefined: answer with every visual token */
  reduction: ReductionSetting | undefined;
  maxNewTokens: number;
  temperature: number;
  /** 1: the whole distribution */
  topP: number;
  /** 0: every token */
  topK: number;
  /** 0: no cut */
  minP: number;
  /** 1: off */
  repetitionPenalty: number;
  /** undefined: a new one for each sampled question */
  seed: number | undefined;
  /** 0: never unload */
  unloadAfterMinutes: number;
}

/** One setting as package.json declares it (a JSON schema plus VS Code's extra keys). */
export interface SettingSchema {
  /** ['integer', 'null']: a whole number, or null for none (the Settings editor's field left empty) */
  type: 'string' | 'number' | 'integer' | 'boolean' | 'object' | ['integer', 'null'];
  default: string | number | boolean | Record<string, string> | null;
  /** for an object: the schema of each value */
  additionalProperties?: { type: 'string'; enum: readonly string[] };
  scope?: 'machine' | 'window' | 'resource';
  enum?: readonly string[];
  enumDescriptions?: readonly string[];
  minimum?: number;
  exclusiveMinimum?: number;
  maximum?: number;
  pattern?: string;
  patternErrorMessage?: string;
  markdownDescription: string;
  order?: number;
}

/** The main settings, in the order the Settings editor shows them. */
export const MAIN_SETTINGS: Record<string, SettingSchema> = {
  'ficoco.modelPath': {
    type: 'string',
    default: '',
    scope: 'machine',
    markdownDescription:
      'Absolute path of a Hugging Face LLaVA model folder (`config.json`, `*.safetensors`, ' +
      '`tokenizer.json`, `tokenizer_config.json`, `preprocessor_config.json`). Empty: the built-in tiny ' +
      'model. `~` stands for your home folder.',
  },
  'ficoco.engine': {
    type: 'string',
    default: 'local',
    scope: 'machine',
    pattern: '^(local|https?://\\S+)$',
    patternErrorMessage: '`local`, or the base URL of an OpenAI-compatible server, e.g. http://gpu-box:8080/v1.',
    markdownDescription:
      'Where questions are answered: `local` (an engine process on this machine, the model above), or the base URL ' +
      'of an OpenAI-compatible server, e.g. `http://gpu-box:8080/v1`. With `ficoco serve` behind it the chat, ' +
      'the stats, the overlay and the status bar work as locally; with another server (vLLM, Ollama, …) the ' +
      'chat works without reduction. Its API key is kept by **FiCoCo: Set Engine API Key**, never in settings.',
  },
  'ficoco.engineModel': {
    type: 'string',
    default: '',
    scope: 'machine',
    markdownDescription:
      'The model to ask on the server in `#ficoco.engine#`, as its `GET /v1/models` lists it (e.g. `llava:7b` on ' +
      "Ollama, where `llava` is `llava:latest`). Empty: the server's only model (`ficoco serve` serves one); a " +
      'server that lists several asks you to set it.',
  },
  'ficoco.hubEndpoint': {
    type: 'string',
    default: DEFAULT_HUB_ENDPOINT,
    scope: 'machine',
    pattern: '^https?://\\S+$',
    patternErrorMessage: 'An http:// or https:// address, e.g. https://huggingface.co or a mirror.',
    markdownDescription:
      'Where **FiCoCo: Download Model** fetches models: the Hugging Face Hub, or a mirror or proxy that ' +
      'serves its API.',
  },
  'ficoco.provider': {
    type: 'string',
    default: 'auto',
    scope: 'machine',
    enum: PROVIDER_SETTINGS,
    enumDescriptions: [
      'The best provider this machine has: DirectML on Windows, CoreML on macOS, CUDA on Linux when its ' +
        'libraries are present, then WebGPU where a GPU adapter answers (on Linux, where a Vulkan driver is ' +
        'installed), else CPU (a fallback is said once).',
      'CPU only.',
      'NVIDIA CUDA 12 with cuDNN 9 (Linux).',
      'DirectML (Windows).',
      'CoreML (macOS on Apple silicon).',
      'WebGPU (experimental).',
    ],
    markdownDescription:
      'ONNX Runtime execution provider. When the chosen one cannot load, FiCoCo runs on the CPU and says why.',
  },
  'ficoco.threads': {
    type: 'integer',
    default: 0,
    minimum: 0,
    maximum: 256,
    scope: 'machine',
    markdownDescription:
      'CPU threads for one operation (ONNX Runtime intra-op threads). `0`: one per physical core, or one for a tiny model.',
  },
  'ficoco.quantization': {
    type: 'string',
    default: 'none',
    scope: 'machine',
    enum: WEIGHT_QUANTIZATIONS,
    enumDescriptions: [
      'The weights as the model folder stores them.',
      'Decoder and vision tower linear layers in 8 bits per output channel, multiplied in 8-bit integers: the ' +
        'fastest prefill and image encoding on a CPU, answers nearly unchanged. A CPU holds the decoder twice (as ' +
        'much memory as float16) for faster answering where memory allows, else once (half).',
      'Decoder linear layers in 4-bit blocks: about a quarter of float16, so a 7B model fits a 16 GB ' +
        'laptop; answers change somewhat.',
    ],
    markdownDescription:
      "Quantization of the language model's linear layers. int8, the vision tower's too: one scale per output " +
      "channel, each token's activations quantized to 8 bits as it runs, products in 8-bit integers (ONNX Runtime " +
      'MatMulInteger; answering steps in MatMulNBits, or MatMulInteger too where the memory available at load ' +
      'cannot hold both layouts). int4: blocks of 128 weights with zero points (MatMulNBits), ' +
      'the vision tower in int8 as above. On a GPU provider both modes use MatMulNBits alone and leave the vision ' +
      'tower as stored. The first load of a model quantizes it and caches the result beside its weights (in the ' +
      "extension's storage for a model in the Hugging Face cache or a folder it cannot write); later loads read " +
      'the cache.',
  },
  'ficoco.quantizationByModel': {
    type: 'object',
    default: {},
    scope: 'machine',
    additionalProperties: { type: 'string', enum: WEIGHT_QUANTIZATIONS },
    markdownDescription:
      'Weight quantization per model, overriding `#ficoco.quantization#`: model folder → `none`, `int8` or ' +
      '`int4`, e.g. `{ "/models/llava-1.5-7b-hf": "int4" }`.',
  },
  'ficoco.reduction.method': {
    type: 'string',
    default: AUTO_METHOD,
    enum: [AUTO_METHOD, NO_REDUCTION, ...METHODS.map((m) => m.name)],
    enumDescriptions: [
      "The model's measured recommendation (written by `ficoco tune`), else the setting published for the model " +
        '(FiCoCo-V at 64 of 576 visual tokens for LLaVA-1.5), else FiCoCo-V at 11 %. The status bar says which.',
      'Every visual token reaches the language model (the unreduced baseline).',
      ...METHODS.map((m) => m.description),
    ],
    markdownDescription:
      'Visual token reduction: which method removes or merges visual tokens before (or inside) the ' +
      'language model. `auto` uses what was measured or published for the model. Parameters of each method ' +
      'are under *FiCoCo › Reduction parameters*.',
  },
  'ficoco.reduction.budget': {
    type: 'string',
    default: '11%',
    pattern: BUDGET_PATTERN,
    patternErrorMessage: `Visual tokens kept per image: ${BUDGET_HINT}.`,
    markdownDescription:
      "Visual tokens kept per image when you choose a method (with `auto` the model's recommendation sets it): " +
      "a count (`64`) or a share (`11%` or `0.11`). 11 % is 16 of the built-in model's 144 tokens and 63 of " +
      "LLaVA-1.5's 576.",
  },
  'ficoco.maxNewTokens': {
    type: 'integer',
    default: 256,
    minimum: 1,
    maximum: 4096,
    markdownDescription: 'Longest answer, in tokens.',
  },
  'ficoco.temperature': {
    type: 'number',
    default: 0,
    minimum: 0,
    maximum: 2,
    markdownDescription: 'Sampling temperature. `0` always takes the most likely token (greedy, reproducible).',
  },
  'ficoco.topP': {
    type: 'number',
    default: 1,
    exclusiveMinimum: 0,
    maximum: 1,
    markdownDescription:
      'Nucleus sampling: sample from the most probable tokens whose probabilities add up to this share. `1`: every ' +
      'token. Used when `#ficoco.temperature#` is above 0.',
  },
  'ficoco.topK': {
    type: 'integer',
    default: 0,
    minimum: 0,
    markdownDescription:
      'Sample from this many of the most probable tokens only. `0`: every token. Used when `#ficoco.temperature#` ' +
      'is above 0.',
  },
  'ficoco.minP': {
    type: 'number',
    default: 0,
    minimum: 0,
    maximum: 1,
    markdownDescription:
      'Leave out the tokens less probable than this share of the most probable one. `0`: none. Used when ' +
      '`#ficoco.temperature#` is above 0.',
  },
  'ficoco.repetitionPenalty': {
    type: 'number',
    default: 1,
    exclusiveMinimum: 0,
    markdownDescription:
      "Above `1` makes tokens already in the question or the answer less likely (as transformers' " +
      '`repetition_penalty`), below `1` more; greedy answers too. `1`: off.',
  },
  'ficoco.seed': {
    type: ['integer', 'null'],
    default: null,
    minimum: 0,
    maximum: MAX_SEED,
    markdownDescription:
      'The seed of sampled answers (`#ficoco.temperature#` above 0): a whole number gives the same question the ' +
      'same answer every time. Empty: a new seed for each question, so asking again may answer differently; a ' +
      "sampled answer's details in the chat and the status bar's tooltip give the seed it was drawn with.",
  },
  'ficoco.unloadAfterMinutes': {
    type: 'integer',
    default: 15,
    minimum: 0,
    maximum: 1440,
    markdownDescription:
      'Stop the engine process and free its memory after this many idle minutes. `0`: keep it loaded.',
  },
};

/**
 * The settings an answer's figures depend on (speedup.ts's SpeedupSubject: the engine's load or server, the provider,
 * the reduction with its parameters): once one changes, the last answer's figures describe a setting no longer in force.
 */
export const FIGURES_DEPEND_ON = [
  'ficoco.modelPath',
  'ficoco.engine',
  'ficoco.engineModel',
  'ficoco.provider',
  'ficoco.threads',
  'ficoco.quantization',
  'ficoco.quantizationByModel',
  'ficoco.reduction',
] as const;

/**
 * Where a choice made in the UI (the reduction quick pick) is saved: the user settings, unless the workspace sets the
 * setting, whose value would override the user's and make the choice do nothing; then the workspace's.
 */
export function choiceTarget(inspected: { workspaceValue?: unknown } | undefined): 'global' | 'workspace' {
  return inspected?.workspaceValue !== undefined ? 'workspace' : 'global';
}

/**
 * What the reduction quick pick's Budget item says: the budget, or, with `auto` (which sends none) or reduction off,
 * that it waits for a method to be picked; else a budget chosen there would seem to do nothing.
 */
export function budgetChoiceDescription(method: string, budget: string): string {
  if (method === AUTO_METHOD) return `now the model's recommendation sets it; ${budget} applies to a method you pick`;
  if (method === NO_REDUCTION) return `reduction is off; ${budget} applies to a method you pick`;
  return `now ${budget} visual tokens per image`;
}

/** ficoco.modelPath as a folder path: `~` and `~/…` stand for the home folder. */
export function expandModelPath(configured: string): string {
  return configured === '~' || configured.startsWith('~/') ? path.join(os.homedir(), configured.slice(1)) : configured;
}

/** `ficoco.reduction.<method>.<param>` for every parameter of every method in the registry. */
export function reductionParamSettings(): Record<string, SettingSchema> {
  const settings: Record<string, SettingSchema> = {};
  for (const method of METHODS) {
    for (const [name, spec] of Object.entries(method.params))
      settings[paramSettingKey(method.name, name)] = paramSchema(method.name, spec);
  }
  return settings;
}

export function paramSettingKey(method: string, param: string): string {
  return `ficoco.reduction.${method}.${param}`;
}

function paramSchema(method: string, spec: ParamSpec): SettingSchema {
  const markdownDescription = `\`${method}\`: ${spec.description}`;
  if (spec.type === 'boolean') return { type: 'boolean', default: spec.default, markdownDescription };
  if (spec.type === 'enum') return { type: 'string', default: spec.default, enum: spec.values, markdownDescription };
  if (spec.type === 'list')
    return {
      type: 'string',
      default: spec.default,
      pattern: NUMBER_LIST_PATTERN,
      patternErrorMessage: 'Numbers of 0 or more separated by commas (e.g. 3,2,1), or empty.',
      markdownDescription,
    };
  return { type: spec.type, default: spec.default, minimum: spec.min, maximum: spec.max, markdownDescription };
}

/** Reads every setting through `get` (undefined = not set); `problems` says which values were replaced by defaults. */
export function readSettings(get: (key: string) => unknown): { settings: FicocoSettings; problems: SettingProblem[] } {
  const problems: SettingProblem[] = [];
  const value = <T>(key: string, valid: (v: unknown) => v is T, expected: string): T => {
    const schema = MAIN_SETTINGS[key];
    const given = get(key);
    if (given === undefined || valid(given)) return (given ?? schema.default) as T;
    problems.push({
      setting: key,
      message: `${key} is ${JSON.stringify(given)}; expected ${expected}. Using the default, ${JSON.stringify(schema.default)}.`,
    });
    return schema.default as T;
  };
  const inRange =
    (key: string, integer: boolean) =>
    (v: unknown): v is number => {
      const { minimum = -Infinity, exclusiveMinimum = -Infinity, maximum = Infinity } = MAIN_SETTINGS[key];
      return (
        typeof v === 'number' &&
        Number.isFinite(v) &&
        v >= minimum &&
        v > exclusiveMinimum &&
        v <= maximum &&
        (!integer || Number.isInteger(v))
      );
    };
  const range = (key: string, integer: boolean) => {
    const { minimum, exclusiveMinimum, maximum } = MAIN_SETTINGS[key];
    const kind = integer ? 'a whole number' : 'a number';
    if (exclusiveMinimum !== undefined)
      return maximum === undefined
        ? `${kind} above ${exclusiveMinimum}`
        : `${kind} above ${exclusiveMinimum}, up to ${maximum}`;
    return maximum === undefined ? `${kind}, ${minimum} or more` : `${kind} from ${minimum} to ${maximum}`;
  };
  /** A number setting in its declared range, else its default (reported). */
  const number = (key: string, integer: boolean) => value(key, inRange(key, integer), range(key, integer));
  const oneOf =
    (key: string) =>
    (v: unknown): v is string =>
      typeof v === 'string' && (MAIN_SETTINGS[key].enum ?? []).includes(v);
  const isString = (v: unknown): v is string => typeof v === 'string';

  const method = value(
    'ficoco.reduction.method',
    oneOf('ficoco.reduction.method'),
    `one of ${MAIN_SETTINGS['ficoco.reduction.method'].enum!.join(', ')}`,
  );
  const budgetLabel = value(
    'ficoco.reduction.budget',
    (v): v is string => typeof v === 'string' && parseBudget(v) !== undefined,
    BUDGET_HINT,
  ).trim();
  const settings: FicocoSettings = {
    modelPath: value('ficoco.modelPath', isString, 'a folder path').trim(),
    engine: value(
      'ficoco.engine',
      (v): v is string => typeof v === 'string' && new RegExp(MAIN_SETTINGS['ficoco.engine'].pattern!).test(v.trim()),
      '"local" or an http:// or https:// address',
    ).trim(),
    engineModel: value('ficoco.engineModel', isString, 'a model name').trim(),
    provider: value(
      'ficoco.provider',
      oneOf('ficoco.provider'),
      `one of ${PROVIDER_SETTINGS.join(', ')}`,
    ) as ProviderSetting,
    threads: number('ficoco.threads', true),
    quantization: value(
      'ficoco.quantization',
      oneOf('ficoco.quantization'),
      `one of ${WEIGHT_QUANTIZATIONS.join(', ')}`,
    ) as WeightQuantization,
    quantizationByModel: quantizationByModel(
      value(
        'ficoco.quantizationByModel',
        (v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v),
        `an object from model folders to one of ${WEIGHT_QUANTIZATIONS.join(', ')}`,
      ),
      problems,
    ),
    reduction:
      method === NO_REDUCTION
        ? undefined
        : {
            method,
            budget: parseBudget(budgetLabel)!,
            budgetLabel,
            params: method === AUTO_METHOD ? {} : methodParams(method, get, problems),
          },
    maxNewTokens: number('ficoco.maxNewTokens', true),
    temperature: number('ficoco.temperature', false),
    topP: number('ficoco.topP', false),
    topK: number('ficoco.topK', true),
    minP: number('ficoco.minP', false),
    repetitionPenalty: number('ficoco.repetitionPenalty', false),
    seed:
      value(
        'ficoco.seed',
        (v): v is number | null => v === null || inRange('ficoco.seed', true)(v),
        `${range('ficoco.seed', true)}, or null for a new one for each question`,
      ) ?? undefined,
    unloadAfterMinutes: number('ficoco.unloadAfterMinutes', true),
  };
  return { settings, problems };
}

/**
 * ficoco.quantizationByModel keyed by model folders as modelFolder resolves them; an entry whose folder is not absolute
 * or whose quantization is unknown is reported and left out, the others kept.
 */
function quantizationByModel(
  given: Record<string, unknown>,
  problems: SettingProblem[],
): Record<string, WeightQuantization> {
  const byFolder: Record<string, WeightQuantization> = {};
  for (const [folder, quantization] of Object.entries(given)) {
    const entry = `ficoco.quantizationByModel["${folder}"]`;
    const dir = modelFolder(folder);
    if (!(WEIGHT_QUANTIZATIONS as readonly unknown[]).includes(quantization)) {
      problems.push({
        setting: 'ficoco.quantizationByModel',
        message: `${entry} is ${JSON.stringify(quantization)}; expected one of ${WEIGHT_QUANTIZATIONS.join(', ')}. Ignoring it.`,
      });
    } else if (dir === undefined) {
      problems.push({
        setting: 'ficoco.quantizationByModel',
        message: `${entry}: set the absolute path of a model folder (\`~\` stands for your home folder). Ignoring it.`,
      });
    } else byFolder[dir] = quantization as WeightQuantization;
  }
  return byFolder;
}

/**
 * Whether ficoco.modelPath as configured names `folder`, however it is spelt (`~`, a trailing separator, `/./`, and on
 * Windows forward slashes and the letters' case): the folder the engine loads for it.
 */
export function modelPathNames(
  configured: string,
  folder: string,
  platform: NodeJS.Platform = process.platform,
): boolean {
  const paths = platform === 'win32' ? path.win32 : path.posix;
  const [dir, other] = [modelFolder(configured, paths), paths.resolve(folder)];
  // Windows' file names are case-insensitive, and VS Code spells a drive letter in lower case.
  return dir !== undefined && (platform === 'win32' ? dir.toLowerCase() === other.toLowerCase() : dir === other);
}

/** A model folder as settings name it, to compare: `~` expanded, normalized; undefined when it is not absolute. */
function modelFolder(configured: string, paths: path.PlatformPath = path): string | undefined {
  const expanded = expandModelPath(configured.trim());
  return paths.isAbsolute(expanded) ? paths.resolve(expanded) : undefined;
}

/**
 * Where the extension keeps what the settings point at: its built-in model, and quantized weights of Hugging Face cache
 * models.
 */
export interface ExtensionFolders {
  builtinModel: string;
  quantizedCache: string;
}

/**
 * The engine load the settings ask for: the model folder (the built-in one when empty), provider, threads,
 * quantization.
 */
/** The model folder ficoco.modelPath names: the built-in model's when empty. */
export function modelDirOf(settings: FicocoSettings, folders: ExtensionFolders): string {
  return settings.modelPath === '' ? folders.builtinModel : expandModelPath(settings.modelPath);
}

export function loadParamsOf(settings: FicocoSettings, folders: ExtensionFolders): LoadParams {
  const modelDir = modelDirOf(settings, folders);
  if (!path.isAbsolute(modelDir)) {
    throw new SettingsError(
      `ficoco.modelPath is "${settings.modelPath}"; set it to the absolute path of a model folder (${MODEL_FILES}).`,
      'ficoco.modelPath',
    );
  }
  const quantization = quantizationFor(settings, modelDir);
  return {
    modelDir,
    provider: settings.provider,
    ...(settings.threads > 0 ? { threads: settings.threads } : {}),
    ...(quantization !== 'none' ? { quantization, quantizedCacheDir: folders.quantizedCache } : {}),
    ...(settings.reduction ? { warmUp: reductionRequest(settings.reduction) } : {}),
  };
}

/** The reduction setting as the engine takes it. */
export function reductionRequest({ method, budget, params }: ReductionSetting): ReductionRequest {
  return method === AUTO_METHOD ? { method, params } : { method, budget, params };
}

/** The quantization for a model folder: its own entry in ficoco.quantizationByModel, else ficoco.quantization. */
export function quantizationFor(settings: FicocoSettings, modelDir: string): WeightQuantization {
  const dir = modelFolder(modelDir);
  return (dir !== undefined ? settings.quantizationByModel[dir] : undefined) ?? settings.quantization;
}

/** The setting that decides a model folder's quantization (quantizationFor): where a memory failure is fixed. */
export function quantizationSettingFor(settings: FicocoSettings, modelDir: string): string {
  const dir = modelFolder(modelDir);
  const ownEntry = dir !== undefined && settings.quantizationByModel[dir] !== undefined;
  return ownEntry ? 'ficoco.quantizationByModel' : 'ficoco.quantization';
}

/** The method's parameters the user set; each invalid one is reported and left to its default. */
function methodParams(
  method: string,
  get: (key: string) => unknown,
  problems: SettingProblem[],
): Record<string, ParamValue> {
  const spec = METHODS.find((m) => m.name === method)!;
  const params: Record<string, ParamValue> = {};
  for (const name of Object.keys(spec.params)) {
    const key = paramSettingKey(method, name);
    const given = get(key);
    if (given === undefined) continue;
    try {
      resolveParams(spec, { [name]: given });
      params[name] = given as ParamValue;
    } catch (error) {
      problems.push({
        setting: key,
        message: `${key}: ${error instanceof Error ? error.message : String(error)} Using the default.`,
      });
    }
  }
  return params;
}

/** package.json's contributes.configuration: the main settings, then one section for the methods' parameters. */
export function configurationSections(): {
  id: string;
  title: string;
  order: number;
  properties: Record<string, SettingSchema>;
}[] {
  const ordered = (settings: Record<string, SettingSchema>) =>
    Object.fromEntries(Object.entries(settings).map(([key, schema], order) => [key, { ...schema, order }]));
  return [
    { id: 'ficoco', title: 'FiCoCo', order: 0, properties: ordered(MAIN_SETTINGS) },
    {
      id: 'ficoco-reduction-parameters',
      title: 'Reduction parameters',
      order: 1,
      properties: ordered(reductionParamSettings()),
    },
  ];
}
