import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { AnswerStats, LlavaEngine } from '../engine/engine';
import { FicocoError } from '../engine/errors';
import { archFromConfig, archPreset, ARCH_PRESETS, FlopsError, flopsTable, ModelArch } from '../flops/index';
import { PROVIDERS, ProviderSetting } from '../engine/runtime/provider';

const USAGE = `Usage:
  ficoco ask --model DIR --image FILE [--image FILE ...] [options] "question"

Options:
  --max-new-tokens N   most tokens to generate (default 256)
  --temperature T      0 = greedy (default); > 0 samples
  --top-p P            nucleus sampling threshold (default 1)
  --seed N             sampling seed (default 0)
  --provider NAME      auto | ${PROVIDERS.join(' | ')} (default cpu)
  --threads N          intra-op threads (default: one per physical core)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'ask') return ask(rest);
  if (command === 'flops') return flops(rest);
  process.stderr.write(command === undefined || command === '--help' || command === 'help' ? USAGE : `Unknown command "${command}".\n\n${USAGE}`);
  return command === undefined || command === '--help' || command === 'help' ? 0 : 2;
}

async function ask(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      image: { type: 'string', multiple: true },
      'max-new-tokens': { type: 'string', default: '256' },
      temperature: { type: 'string', default: '0' },
      'top-p': { type: 'string', default: '1' },
      seed: { type: 'string', default: '0' },
      provider: { type: 'string', default: 'cpu' },
      threads: { type: 'string' },
    },
  });
  if (!values.model) throw new FicocoError('--model DIR is required: a Hugging Face LLaVA model folder.', 'input');
  const images = values.image ?? [];
  if (images.length === 0) throw new FicocoError('--image FILE is required: the screenshot or diagram to ask about.', 'input');
  const provider = values.provider as ProviderSetting;
  if (provider !== 'auto' && !PROVIDERS.includes(provider as (typeof PROVIDERS)[number])) {
    throw new FicocoError(`--provider ${provider} is not known; use auto, ${PROVIDERS.join(', ')}.`, 'input');
  }
  const question = positionals.join(' ');
  const imageFiles = images.map((file) => {
    if (!fs.existsSync(file)) throw new FicocoError(`${file} does not exist.`, 'image');
    return { bytes: fs.readFileSync(file), name: path.basename(file) };
  });
  const engine = await LlavaEngine.load(values.model, { provider, threads: values.threads ? integer('--threads', values.threads, 1) : undefined });
  try {
    const answer = await engine.ask({
      question,
      images: imageFiles,
      maxNewTokens: integer('--max-new-tokens', values['max-new-tokens'], 1),
      sampling: { temperature: number('--temperature', values.temperature, 0), topP: number('--top-p', values['top-p'], 0), seed: integer('--seed', values.seed, 0) },
      onText: (text) => process.stdout.write(text),
    });
    process.stdout.write('\n\n' + formatStats(answer.stats) + '\n');
  } finally {
    await engine.dispose();
  }
  return 0;
}

export function formatStats(stats: AnswerStats): string {
  const visual = stats.visualTokens.map((v) => `${v.atDecoder}/${v.original}`).join(' + ');
  const lines = [
    `tokens in       ${stats.promptTokens} (visual ${visual})`,
    `tokens out      ${stats.generatedTokens}`,
    `preprocess      ${stats.preprocessMs.toFixed(1)} ms`,
    `vision          ${stats.visionMs.toFixed(1)} ms`,
    `LLM prefill     ${stats.prefillMs.toFixed(1)} ms`,
    `TTFT            ${stats.ttftMs.toFixed(1)} ms`,
    `decode          ${stats.decodeTokensPerSecond.toFixed(1)} tokens/s`,
    `provider        ${stats.provider}${stats.providerFallback ? ` (${stats.providerFallback})` : ''}`,
  ];
  for (const step of stats.steps) lines.push(`step ${step.site.padEnd(10)} ${step.tokensBefore} → ${step.tokensAfter} visual tokens (${step.ms.toFixed(2)} ms)`);
  return lines.join('\n');
}

function number(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min) throw new FicocoError(`${flag} ${text} is not a number ≥ ${min}.`, 'input');
  return value;
}

function integer(flag: string, text: string, min: number): number {
  const value = number(flag, text, min);
  if (!Number.isInteger(value)) throw new FicocoError(`${flag} ${text} is not a whole number.`, 'input');
  return value;
}

const FLOPS_USAGE = `Usage:
  ficoco flops (--model DIR | --arch NAME) [--text-tokens 60] [--budgets 576,192,128,64]

Prefill FLOPs and KV cache of one image + text when visual tokens are reduced before the LLM (every
decoder layer sees kept + text tokens). LLM TFLOPs use LLM-Viewer's accounting, as the FiCoCo paper does.
Architectures: ${Object.keys(ARCH_PRESETS).join(', ')}
`;

/** `ficoco flops`: the analytic FLOPs / KV-cache table of src/flops. */
async function flops(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { model: { type: 'string' }, arch: { type: 'string' }, 'text-tokens': { type: 'string', default: '60' }, budgets: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help) {
    process.stdout.write(FLOPS_USAGE);
    return 0;
  }
  if ((values.model === undefined) === (values.arch === undefined)) {
    throw new FicocoError(`give exactly one of --model DIR (a LLaVA model folder) or --arch NAME (${Object.keys(ARCH_PRESETS).join(', ')}).`, 'input');
  }
  try {
    let arch: ModelArch;
    if (values.model !== undefined) {
      const file = path.join(values.model, 'config.json');
      if (!fs.existsSync(file)) throw new FicocoError(`${file} does not exist; --model needs a Hugging Face LLaVA model folder.`, 'model-folder');
      let json: unknown;
      try {
        json = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch (error) {
        throw new FicocoError(`${file} is not valid JSON: ${(error as Error).message}`, 'config');
      }
      arch = archFromConfig(json, path.basename(path.resolve(values.model)));
    } else {
      arch = archPreset(values.arch as string);
    }
    const textTokens = integer('--text-tokens', values['text-tokens'], 0);
    const budgets = values.budgets === undefined
      ? [...new Set([arch.visualTokensPerImage, 192, 128, 64])].filter((b) => b <= arch.visualTokensPerImage)
      : values.budgets.split(',').map((b) => (b.trim() === '' ? NaN : integer('--budgets', b.trim(), 0)));
    if (budgets.some(Number.isNaN)) throw new FicocoError(`--budgets ${values.budgets} must be a comma-separated list of visual token counts, e.g. 576,192,128,64.`, 'input');
    const v = arch.vision;
    const t = arch.llm;
    process.stdout.write(
      `${arch.name}: vision ${v.layersRun}/${v.layers} layers × ${(v.imageSize / v.patchSize) ** 2 + 1} tokens (D ${v.hiddenSize}), ` +
        `LLM ${t.layers} layers (D ${t.hiddenSize}, FFN ${t.intermediateSize}, ${t.heads} heads, ${t.kvHeads} kv heads); one image, ${textTokens} text tokens\n\n` +
        flopsTable(arch, textTokens, budgets) + '\n',
    );
    return 0;
  } catch (error) {
    if (error instanceof FlopsError) throw new FicocoError(error.message, error.kind);
    throw error;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof FicocoError) {
      process.stderr.write(`error: ${error.message}\n`);
      process.exit(2);
    }
    if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`error: ${error.message}\n\n${USAGE}`);
      process.exit(2);
    }
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
