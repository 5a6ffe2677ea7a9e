import * as fs from 'node:fs';
import * as path from 'node:path';
import { FicocoError } from '../common/errors';
import { checkImageFile } from '../common/imageFile';
import { parseModelConfig } from '../engine/models/registry';
import { readModelJson } from '../engine/text/json-file';
import { type PublishedReduction, type ReductionChoice, chooseReduction } from '../engine/recommendation';
import { AUTO_METHOD, NO_REDUCTION } from '../common/reductionChoice';
import { readableBudget } from '../common/budget';
import { flopsArchOf } from '../engine/models/flopsArch';
import { exifOrientation, uprightSize } from '../engine/image/orientation';
import {
  ARCH_PRESETS,
  archForImage,
  ModelArch,
  RunShape,
  archPreset,
  flopsTable,
  flopsUnit,
  llmLayerFlops,
  patchesPerSide,
  runFlops,
  runKvCacheBytes,
  unreducedShape,
  visionLayerFlops,
  visionTokensPerImage,
} from '../flops/index';
import { ModelShape } from '../reduction/method';
import { imageOfSize, planReduction } from '../reduction/registry';
import { planRunShape, tiledRunShape } from './runShape';
import { modelDirArg } from './models';
import { keptPerPass, planTiledReduction } from '../reduction/tiled';
import type { Step } from '../reduction/paradigm';
import { siteStage } from '../reduction/tokenState';
import { anyresLayout } from '../common/anyres';
import {
  DEFAULT_IMAGE_SIZE,
  budgetAboveTokens,
  budgetArg,
  budgetsArg,
  imageSizeArg,
  integer,
  parseCommandArgs,
  readImageArg,
  reductionArg,
  CommandOptions,
} from './args';

export const FLOPS_USAGE = `Usage:
  ficoco flops (--model DIR | --arch NAME) [--image FILE | --image-size WxH] [--text-tokens 60] [--budgets 576,192,25%]
  ficoco flops (--model DIR | --arch NAME) --method NAME --budget N [--param name=value ...] [--text-tokens 60]
  ficoco flops --model DIR --method auto [--text-tokens 60]

Analytic prefill FLOPs (LLM TFLOPs in LLM-Viewer's accounting, as the FiCoCo paper reports them) and the
fp16 KV cache of one image + text. Without --method: visual tokens reduced before the LLM, one row per
budget. With --method: that method's schedule, layer by layer, against the unreduced run; on a tiled
architecture every pass runs its tower steps on its tokens on the image and, after them, the decoder is counted
with what the passes keep and a row end per row (an estimate: a run drops the row ends of rows it empties).
Its totals come twice: every query with every key (the paper's count), and causally, only the scores a causal
mask keeps (what the engine's chunked, fused attention computes).
Tiled architectures (llava-next-*, llava-onevision-*) read a screenshot at its own size: --image (a PNG,
JPEG, WebP or GIF; only its header is read) or --image-size (default ${DEFAULT_IMAGE_SIZE}) says which, and
sets their tiles and visual tokens.
Architectures: ${Object.keys(ARCH_PRESETS).join(', ')}
`;

export const FLOPS_OPTIONS = {
  model: { type: 'string' },
  arch: { type: 'string' },
  image: { type: 'string' },
  'image-size': { type: 'string' },
  'text-tokens': { type: 'string', default: '60' },
  budgets: { type: 'string' },
  method: { type: 'string' },
  budget: { type: 'string' },
  param: { type: 'string', multiple: true },
  help: { type: 'boolean' },
} satisfies CommandOptions;

/** `ficoco flops`: the analytic FLOPs / KV-cache tables of src/flops. */
export async function flopsCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs('flops', { args, options: FLOPS_OPTIONS });
  if (values.help) {
    process.stdout.write(FLOPS_USAGE);
    return 0;
  }
  if ((values.model === undefined) === (values.arch === undefined)) {
    throw new FicocoError(
      `give exactly one of --model DIR (a LLaVA model folder) or --arch NAME (${Object.keys(ARCH_PRESETS).join(', ')}).`,
      'input',
    );
  }
  const folder = values.model !== undefined ? modelOfFolder(modelDirArg(values.model)) : undefined;
  const named = folder?.arch ?? archPreset(values.arch as string);
  const sizeFlag = values.image !== undefined ? '--image' : values['image-size'] !== undefined ? '--image-size' : '';
  if (values.image !== undefined && values['image-size'] !== undefined)
    throw new FicocoError('give --image FILE or --image-size WxH, not both.', 'input');
  if (!named.anyres && sizeFlag)
    throw new FicocoError(
      `${named.name} sees every image at ${named.vision.imageSize} px; ${sizeFlag} is for tiled architectures.`,
      'input',
    );
  const size =
    values.image !== undefined
      ? await screenshotSize(values.image)
      : imageSizeArg(values['image-size'] ?? DEFAULT_IMAGE_SIZE);
  const arch = archForImage(named, size);
  const textTokens = integer('--text-tokens', values['text-tokens'], 0);
  if (values.method !== undefined && values.budgets !== undefined)
    throw new FicocoError('--budgets is for the table without --method; a method takes one --budget.', 'input');
  const image = arch.anyres ? imageOfSize(size) : 'an image';
  const budgets = values.method === undefined ? budgetList(values.budgets, arch, image) : undefined;
  const reduction = reductionArg(values.method, values.budget, values.param);
  const model = shapeOf(arch);
  const auto = reduction?.method === AUTO_METHOD ? autoChoice(folder, model) : undefined;
  // Written at the end: an option refused on the way (a budget too large for the image) leaves no half report.
  const report: string[] = [];
  const v = arch.vision;
  const t = arch.llm;
  const passes = arch.visionPassesPerImage > 1 ? ` × ${arch.visionPassesPerImage} passes (tiles + base image)` : '';
  report.push(
    `${arch.name}: vision ${v.layersRun}/${v.layers} layers × ${visionTokensPerImage(v)} ` +
      `tokens${passes} (D ${v.hiddenSize}), ${arch.visualTokensPerImage} visual tokens to the LLM, ` +
      `LLM ${t.layers} layers (D ${t.hiddenSize}, FFN ${t.intermediateSize}, ${t.heads} heads, ` +
      `${t.kvHeads} kv heads); one image, ${textTokens} text tokens\n\n`,
  );
  if (budgets) return written([...report, flopsTable(arch, textTokens, budgets) + '\n']);
  if (auto) {
    const chosen =
      auto.method === NO_REDUCTION ? 'every visual token' : `${auto.method} at ${readableBudget(auto.budget)}`;
    report.push(`auto: ${chosen}. ${auto.why}\n\n`);
  }
  // reductionArg gives every method but auto and none a budget, and none is undefined.
  const request = auto ?? (reduction?.budget ? { ...reduction, budget: reduction.budget } : undefined);
  if (request === undefined || request.method === NO_REDUCTION)
    return written([...report, flopsTable(arch, textTokens, [arch.visualTokensPerImage]) + '\n']);
  const prompt = { images: 1, textTokens };
  const stepList = (steps: readonly Step[]) => steps.map((s) => `${s.site} −${s.remove}`).join(', ') || 'no steps';
  if (arch.anyres) {
    const layout = anyresLayout(arch.anyres, size);
    const plan = planTiledReduction(request, model, { size, layout });
    const content = layout.tokens - layout.grid.rows;
    const kept = keptPerPass(plan);
    const total = kept.reduce((sum, tokens) => sum + tokens, 0);
    // A ranked step's counts per pass come from the image's scores; the projector's FLOPs depend only on their sum.
    const shares = plan.perPass.some((step) => step.rank)
      ? `the passes are ranked together and keep ${total} in all (as shares of their tokens on the image: ` +
        `${kept.join(' + ')}; a run gives each what it wins)`
      : `each pass keeps the same share of its tokens on the image, ${kept.join(' + ')} = ${total} (a whole ` +
        `pass ${kept[0]}/${model.visualTokens})`;
    const tower = plan.perPass.length ? `In the tower ${shares}: ${stepList(plan.perPass)}.` : 'Nothing in the tower.';
    const before = plan.onPacked.filter((step) => siteStage(step.site) === 'packed');
    const inDecoder = plan.onPacked.filter((step) => siteStage(step.site) === 'decoder');
    const decoder = plan.onPacked.length
      ? [
          before.length ? `Before the decoder, on the packed image: ${stepList(before)}.` : '',
          inDecoder.length ? `In the decoder: ${stepList(inDecoder)}.` : '',
        ]
          .filter(Boolean)
          .join(' ')
      : 'The decoder is counted with a row end per row, an estimate: a run drops those of rows it empties.';
    return written([
      ...report,
      `${request.method}, ${plan.keep}/${content} of the image's visual tokens kept (its ${layout.grid.rows} row ` +
        `ends besides). ${tower} ${decoder}\n\n`,
      methodTable(arch, tiledRunShape(plan, model, layout, textTokens), unreducedShape(arch, prompt)) + '\n',
    ]);
  }
  const plan = planReduction(request.method, request.budget, model, request.params);
  return written([
    ...report,
    `${plan.method.name}, ${plan.keep}/${model.visualTokens} visual tokens kept: ${stepList(plan.steps)}\n\n`,
    methodTable(arch, planRunShape(plan, model, prompt), unreducedShape(arch, prompt)) + '\n',
  ]);
}

/** The report on stdout, once complete; exit code 0. */
function written(report: readonly string[]): number {
  process.stdout.write(report.join(''));
  return 0;
}

/** What `--method auto` stands for on a model folder, as the engine resolves it. */
function autoChoice(
  folder: { dir: string; published?: PublishedReduction } | undefined,
  model: ModelShape,
): ReductionChoice {
  if (!folder)
    throw new FicocoError(
      "--method auto stands for a model folder's choice (its `ficoco tune` recommendation, else the setting " +
        "published for it, else FiCoCo's default): give --model DIR, or name a method.",
      'input',
    );
  return chooseReduction(folder.dir, model, folder.published);
}

/** A model folder's architecture, and the reduction its family publishes for it (what `auto` falls back to). */
function modelOfFolder(folder: string): { dir: string; arch: ModelArch; published?: PublishedReduction } {
  const file = path.join(folder, 'config.json');
  if (!fs.existsSync(file))
    throw new FicocoError(`${file} does not exist; --model needs a Hugging Face LLaVA model folder.`, 'model-folder');
  const model = parseModelConfig(readModelJson(file), file);
  return {
    dir: folder,
    arch: flopsArchOf(model.config, path.basename(path.resolve(folder))),
    ...(model.publishedReduction ? { published: model.publishedReduction } : {}),
  };
}

/** What a method needs to place its steps, from the FLOPs model's description. */
function shapeOf(arch: ModelArch): ModelShape {
  const side = patchesPerSide(arch.vision);
  return {
    visionLayers: arch.vision.layersRun,
    textLayers: arch.llm.layers,
    visualTokens: side * side,
    grid: { rows: side, cols: side },
    hasClassToken: arch.vision.classToken,
  };
}

/** An image file's size from its header, with the checks every image gets, as the engine reads it: upright. */
async function screenshotSize(file: string): Promise<{ width: number; height: number }> {
  const { bytes, name } = readImageArg(file);
  const header = checkImageFile(bytes, name);
  return uprightSize(header, await exifOrientation(bytes, header.format));
}

/** --budgets as visual tokens kept of the `all` that `image` ("an image", "a 1920 × 1080 image") brings. */
function budgetList(text: string | undefined, arch: ModelArch, image: string): number[] {
  const all = arch.visualTokensPerImage;
  if (text === undefined && arch.anyres) return [all, Math.round(all * 0.25), Math.round(all * 0.11)];
  if (text === undefined) return [...new Set([all, 192, 128, 64])].filter((b) => b <= all);
  // A share (25%, 0.25) is of the image's visual tokens, as `bench --budgets` takes it; a count may be 0 here.
  const budgets = budgetsArg(text, (entry) => (entry === '0' ? { tokens: 0 } : budgetArg(entry, '--budgets')));
  const tokens = budgets.map((budget) => ('ratio' in budget ? Math.round(budget.ratio * all) : budget.tokens));
  const tooMany = tokens.find((kept) => kept > all);
  if (tooMany !== undefined) throw budgetAboveTokens(tooMany, all, image);
  return tokens;
}

/** Per-layer tokens and FLOPs of a method's run next to the unreduced run, then the totals. */
function methodTable(arch: ModelArch, run: RunShape, base: RunShape): string {
  const reduced = runFlops(arch, run);
  const unreduced = runFlops(arch, base);
  const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
  // The unreduced rows: a tiled image's tower runs once per pass, and each vision row adds up the passes.
  const unreducedVision = base.vision[0].map((_, l) =>
    sum(base.vision.map((pass) => visionLayerFlops(arch.vision, pass[l]).total)),
  );
  const unreducedLlm = base.llm.map((tokensIn) => llmLayerFlops(arch.llm, tokensIn).total);
  // Units from the unreduced figures: the rows' and a whole prefill's (MFLOPs on the built-in model, TFLOPs on a 7B).
  const layerUnit = flopsUnit(Math.max(...unreducedVision, ...unreducedLlm));
  const totalUnit = flopsUnit(unreduced.total);
  const perLayer = (flops: number) => (flops / layerUnit.divisor).toFixed(1);
  const inTotalUnit = (flops: number) => (flops / totalUnit.divisor).toFixed(3);
  const tokens = (attention: number, mlp: number) => (attention === mlp ? String(attention) : `${attention} → ${mlp}`);
  const lines = [
    `| layer | tokens (attention → MLP) | ${layerUnit.name} | unreduced ${layerUnit.name} |`,
    '|---|---:|---:|---:|',
  ];
  // A tiled image's rows name its passes (attention stays within one).
  const passes = run.vision.length > 1 ? ` (${run.vision.length} passes)` : '';
  run.vision[0].forEach((_, l) => {
    const attention = run.vision.map((pass) => pass[l]);
    const mlp = attention.map((tokensIn, p) => run.visionMlp?.[p][l] ?? tokensIn);
    const flops = sum(attention.map((tokensIn, p) => visionLayerFlops(arch.vision, tokensIn, mlp[p]).total));
    lines.push(
      `| vision ${l}${passes} | ${tokens(sum(attention), sum(mlp))} | ${perLayer(flops)} | ` +
        `${perLayer(unreducedVision[l])} |`,
    );
  });
  run.llm.forEach((attention, l) => {
    const mlp = run.llmMlp?.[l] ?? attention;
    lines.push(
      `| LLM ${l} | ${tokens(attention, mlp)} | ${perLayer(llmLayerFlops(arch.llm, attention, mlp).total)} | ` +
        `${perLayer(unreducedLlm[l])} |`,
    );
  });
  const causal = runFlops(arch, run, 'causal');
  const unreducedCausal = runFlops(arch, base, 'causal');
  const kv = (shape: RunShape) => (runKvCacheBytes(arch, shape) / 1e6).toFixed(1);
  const row = (label: string, method: number, without: number) =>
    `| ${label} | ${inTotalUnit(method)} | ${inTotalUnit(without)} | ${(method / without).toFixed(3)} ` +
    `(${(without / method).toFixed(2)}× less) |`;
  lines.push(
    '',
    '| | this method | unreduced | ratio |',
    '|---|---:|---:|---:|',
    row(`vision ${totalUnit.name}`, reduced.vision, unreduced.vision),
    row(`LLM prefill ${totalUnit.name} (paper's accounting)`, reduced.llm, unreduced.llm),
    row(`total ${totalUnit.name}`, reduced.total, unreduced.total),
    // The engine's chunked and fused attention skips most scores its causal mask hides, so it runs closer to these.
    row(`LLM prefill ${totalUnit.name}, causal (scores the mask hides not counted)`, causal.llm, unreducedCausal.llm),
    row(`total ${totalUnit.name}, causal`, causal.total, unreducedCausal.total),
    `| KV cache MB (fp16) | ${kv(run)} | ${kv(base)} | ` +
      `${(runKvCacheBytes(arch, run) / runKvCacheBytes(arch, base)).toFixed(3)} |`,
  );
  return lines.join('\n');
}
