import { AnswerStats, LlavaEngine } from '../engine/engine';
import { AUTO_METHOD, NO_REDUCTION } from '../common/reductionChoice';
import { FicocoError } from '../common/errors';
import { MAX_IMAGES_PER_QUESTION, checkImageFile } from '../common/imageFile';
import { MAX_NEW_TOKENS_LIMIT, MAX_SEED, MAX_TEMPERATURE } from '../protocol/engine';
import { PROVIDERS } from '../engine/runtime/provider';
import { flopsUnit } from '../flops/index';
import { checkedRequest } from '../reduction/registry';
import {
  MAX_THREADS,
  integer,
  number,
  providerArg,
  quantizationArg,
  prefillOnTerminal,
  quantizingOnStderr,
  parseCommandArgs,
  readImageArg,
  reductionArg,
  threadsArg,
  CommandOptions,
} from './args';
import { hasLargeWeights, rerunAsEngineProcess } from './engineProcess';
import { modelDirArg } from './models';

export const ASK_USAGE = `Usage:
  ficoco ask [--model DIR] --image FILE [--image FILE ...] [options] "question"

Options:
  --model DIR          a Hugging Face LLaVA model folder, or a downloaded preset (default: the built-in tiny-llava-screens)
  --method NAME        visual token reduction (see \`ficoco methods\`), or auto: the model's measured
                       recommendation (ficoco tune), else its published one, else ficoco-v at 11%; none by default
  --budget N           visual tokens kept per image (e.g. 64), or a share (25% or 0.25); not with auto or none
  --param NAME=VALUE   a method parameter (repeatable)
  --max-new-tokens N   most tokens to generate, up to ${MAX_NEW_TOKENS_LIMIT} (default 256)
  --temperature T      0 = greedy (default); > 0 samples, up to ${MAX_TEMPERATURE}
  --top-p P            nucleus sampling threshold, above 0 and up to 1 (default 1)
  --top-k K            sample from the K most probable tokens only; 0 = all (default 0)
  --min-p P            drop tokens less probable than P × the most probable one, 0 to 1 (default 0)
  --repetition-penalty R
                       above 1 repeats tokens of the prompt and the answer less, as transformers' (default 1 = off)
  --seed N             sampling seed, 0 to ${MAX_SEED} (default 0)
  --provider NAME      auto | ${PROVIDERS.join(' | ')} (default cpu)
  --threads N          intra-op threads, up to ${MAX_THREADS} (default: one per physical core; one for a tiny model)
  --quantize MODE      none | int8 | int4: quantization of the decoder; on the CPU the vision tower in int8
                       (cached beside the weights)
  --json               print one JSON object when the answer ends, {answer, stopReason, stats, warmUpMs},
                       instead of streaming the answer and the stats as text (for scripts)
`;

export const ASK_OPTIONS = {
  model: { type: 'string' },
  image: { type: 'string', multiple: true },
  'max-new-tokens': { type: 'string', default: '256' },
  temperature: { type: 'string', default: '0' },
  'top-p': { type: 'string', default: '1' },
  'top-k': { type: 'string', default: '0' },
  'min-p': { type: 'string', default: '0' },
  'repetition-penalty': { type: 'string', default: '1' },
  seed: { type: 'string', default: '0' },
  provider: { type: 'string', default: 'cpu' },
  threads: { type: 'string' },
  quantize: { type: 'string' },
  method: { type: 'string' },
  budget: { type: 'string' },
  param: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean' },
} satisfies CommandOptions;

/** `ficoco ask`: a question about one or more images; the answer streams, then its stats. */
export async function askCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('ask', { args, allowPositionals: true, options: ASK_OPTIONS });
  if (values.help) {
    process.stdout.write(ASK_USAGE);
    return 0;
  }
  const reduction = reductionArg(values.method, values.budget, values.param);
  const modelDir = modelDirArg(values.model);
  const images = values.image ?? [];
  if (images.length === 0)
    throw new FicocoError('--image FILE is required: the screenshot or diagram to ask about.', 'input');
  // As the chat and the server refuse them: more images than a question may carry.
  if (images.length > MAX_IMAGES_PER_QUESTION)
    throw new FicocoError(
      `${images.length} --image files given; a question takes at most ${MAX_IMAGES_PER_QUESTION}: ask about fewer at once.`,
      'input',
    );
  // Every option is checked before the model loads.
  const request = {
    reduction,
    question: positionals.join(' '),
    maxNewTokens: integer('--max-new-tokens', values['max-new-tokens'], 1, MAX_NEW_TOKENS_LIMIT),
    sampling: {
      temperature: number('--temperature', values.temperature, 0, MAX_TEMPERATURE),
      topP: number('--top-p', values['top-p'], 0, 1),
      seed: integer('--seed', values.seed, 0, MAX_SEED),
      topK: integer('--top-k', values['top-k'], 0),
      minP: number('--min-p', values['min-p'], 0, 1),
      repetitionPenalty: number('--repetition-penalty', values['repetition-penalty'], 0),
    },
  };
  if (request.sampling.topP === 0)
    throw new FicocoError('--top-p 0 keeps no token to sample: give a share above 0, up to 1.', 'input');
  if (request.sampling.repetitionPenalty === 0)
    throw new FicocoError('--repetition-penalty 0 divides by zero: give 1 for none, above 1 to repeat less.', 'input');
  const quantization = quantizationArg(values.quantize);
  const load = {
    provider: providerArg(values.provider),
    threads: threadsArg(values.threads),
    quantization,
    onQuantizing: quantizingOnStderr(quantization),
  };
  const imageFiles = images.map((file) => readImageArg(file));
  // What the engine would refuse only after loading the model, minutes for a large one, refused first.
  // The engine's own refusal speaks to the chat's text box; here the question is an argument.
  if (request.question.trim() === '')
    throw new FicocoError(
      'no question given: put it last, in quotes: ficoco ask --image FILE "what does the dialog say?"',
      'input',
    );
  if (reduction && reduction.method !== AUTO_METHOD && reduction.budget)
    checkedRequest(reduction.method, reduction.budget, reduction.params);
  for (const image of imageFiles) checkImageFile(image.bytes, image.name);
  // A large model loads seconds sooner in a process started as the engine's is (with huge pages).
  if (hasLargeWeights(modelDir)) {
    const childExitCode = await rerunAsEngineProcess();
    if (childExitCode !== undefined) return childExitCode;
  }
  const engine = await LlavaEngine.load(modelDir, load);
  try {
    // As the extension does at load: the answer's timings are then those of every later answer, not a first run's.
    const warming = performance.now();
    await engine.warmUp(request.reduction);
    const warmUpMs = performance.now() - warming;
    const progress = prefillOnTerminal(process.stderr);
    const answer = await engine
      .ask({
        ...request,
        images: imageFiles,
        onProgress: progress.show,
        onText: (text) => {
          progress.erase();
          if (!values.json) process.stdout.write(text);
        },
      })
      .finally(() => progress.erase());
    const { text, stopReason, stats } = answer;
    process.stdout.write(
      values.json
        ? `${JSON.stringify({ answer: text, stopReason, stats, warmUpMs })}\n`
        : `\n\n${formatStats(stats)}\n` +
            (engine.quantizedWeights ? `weights         ${engine.quantizedWeights}\n` : '') +
            `warm-up         ${warmUpMs.toFixed(1)} ms before the question\n`,
    );
  } finally {
    await engine.dispose();
  }
  return 0;
}

export function formatStats(stats: AnswerStats): string {
  const visual = stats.visualTokens.map((v) => `${v.atDecoder}/${v.original}`).join(' + ');
  const { reduction } = stats;
  const setting =
    !reduction || reduction.method === NO_REDUCTION
      ? 'none (every visual token)'
      : `${reduction.method} ${reduction.budget}`;
  const lines = [
    `reduction       ${setting}${reduction ? ` — ${reduction.why}` : ''}`,
    `tokens in       ${stats.promptTokens} (visual ${visual})`,
    `tokens out      ${stats.generatedTokens}`,
    `preprocess      ${stats.preprocessMs.toFixed(1)} ms`,
    `vision          ${stats.visionMs.toFixed(1)} ms`,
    `LLM prefill     ${stats.prefillMs.toFixed(1)} ms`,
    `TTFT            ${stats.ttftMs.toFixed(1)} ms`,
    `decode          ${stats.decodeTokensPerSecond.toFixed(1)} tokens/s`,
    `provider        ${stats.provider}${stats.providerFallback ? ` (${stats.providerFallback})` : ''}`,
  ];
  if (stats.historyTrimmed)
    lines.push(
      `history         ${stats.historyTrimmed.droppedMessages} earlier messages left out to fit the ` +
        `${stats.historyTrimmed.contextTokens}-token context`,
    );
  const { run, unreduced } = stats.flops;
  lines.push(
    `FLOPs           ${formatFlops(run.total)} prefill (analytic), ` +
      `${((1 - run.total / unreduced.total) * 100).toFixed(1)} % fewer than unreduced; LLM ` +
      `${formatFlops(run.llm)} of ${formatFlops(unreduced.llm)}`,
  );
  // With several images, each step says whose tokens it reduced: a vision step one image's, a decoder step all of them.
  const imageOf = (image: number | undefined) =>
    stats.visualTokens.length < 2 ? '' : `${image === undefined ? 'all images' : `image ${image + 1}`} `.padEnd(11);
  for (const step of stats.steps)
    lines.push(
      `step ${step.site.padEnd(10)} ${imageOf(step.image)}${step.tokensBefore} → ${step.tokensAfter} visual ` +
        `token${step.tokensAfter === 1 ? '' : 's'} (${step.ms.toFixed(2)} ms)`,
    );
  return lines.join('\n');
}

/** 1.61 TFLOPs, 12.3 GFLOPs, 4.5 MFLOPs */
function formatFlops(flops: number): string {
  const { name, divisor } = flopsUnit(flops);
  return `${(flops / divisor).toFixed(2)} ${name}`;
}
