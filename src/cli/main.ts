import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { AnswerStats, LlavaEngine } from '../engine/engine';
import { FicocoError } from '../engine/errors';
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
