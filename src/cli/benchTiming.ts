/**
 * Timed prefills of one method against the unreduced model (`ficoco bench`, bench/scaling.ts).
 * Two engines hold the two plans (switching plans on one engine rebuilds its sessions); in every round the
 * unreduced prefill runs right before the method's, so each speedup is a ratio of neighbouring runs and
 * drift on a shared machine cancels out.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { type GenerationResult, type ImagePixels, LlavaEngine } from '../engine/engine';
import { Budget, ParamValue, budgetLabel } from '../common/budget';
import { BudgetAboveTokensError } from '../reduction/registry';
import type { ReductionHook } from '../reduction/tokenState';
import type { ScoreCount } from '../flops';
import type { RgbImage } from '../engine/image/rgb-image';
import type { Size } from '../common/anyres';
import { budgetAboveTokens } from './args';

export interface Sample {
  visionMs: number;
  llmMs: number;
  ttftMs: number;
  /** time inside reduction steps (JavaScript), part of visionMs + llmMs */
  stepsMs: number;
  /** CPU time of those steps: what they cost without the stalls a busy machine adds */
  stepsCpuMs: number;
  /** CPU time of every thread in vision and LLM prefill: the work done, whatever else the machine was doing */
  visionCpuMs: number;
  llmCpuMs: number;
  /** share of the machine's CPU time the hypervisor gave to other guests during this generation (Linux), else NaN */
  stealShare: number;
  /** major page faults during this generation (weights read back from disk) */
  majorFaults: number;
  keptTokens: number;
  /** vision tower + projector, and decoder, analytic FLOPs of this prefill */
  visionFlops: number;
  llmFlops: number;
  /** the decoder's FLOPs counting only the attention scores its causal mask keeps */
  llmCausalFlops: number;
  /** tokens/s over `decode` tokens after the first; only where decoding was asked for */
  decodeTokensPerSecond?: number;
}

export interface Row extends Omit<Sample, 'decodeTokensPerSecond'> {
  method: string;
  /** the budget as given ("64", "25%"), or "all" unreduced */
  budget: string;
  decodeTokensPerSecond: number;
  /** median over rounds of (unreduced prefill right before) / (this prefill), LLM part scaled by llmScale */
  pairedSpeedup: number;
  /** the same ratio of CPU times */
  pairedCpuSpeedup: number;
  /** the same ratio of LLM prefill times alone, the part the paper's FLOPs (LLM-Viewer's accounting) count */
  pairedLlmSpeedup: number;
  /** every timed prefill (vision + scaled LLM), ms */
  prefills: number[];
}

export interface Prompt {
  ids: number[];
  pixels: ImagePixels[];
}

/** Vision + LLM prefill ms of a sample or row, the LLM part times `llmScale` (a cut decoder scaled to full depth). */
export const prefillMs = (sample: Pick<Sample, 'visionMs' | 'llmMs'>, llmScale = 1): number =>
  sample.visionMs + llmScale * sample.llmMs;

/** Vision + LLM prefill CPU ms, scaled like prefillMs. */
export const prefillCpuMs = (sample: Pick<Sample, 'visionCpuMs' | 'llmCpuMs'>, llmScale = 1): number =>
  sample.visionCpuMs + llmScale * sample.llmCpuMs;

/** Analytic prefill FLOPs of a sample or row, scaled like prefillMs; the decoder's counted causally if asked. */
export const flopsOf = (
  sample: Pick<Sample, 'visionFlops' | 'llmFlops' | 'llmCausalFlops'>,
  llmScale = 1,
  scores: ScoreCount = 'all',
): number => sample.visionFlops + llmScale * (scores === 'causal' ? sample.llmCausalFlops : sample.llmFlops);

export const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

/** `textTokens` token ids around one image placeholder (five before it, as a chat template puts them). */
export function syntheticPrompt(engine: LlavaEngine, textTokens: number, pixels: ImagePixels): Prompt {
  const text = Array.from({ length: textTokens }, (_, i) => 10 + (i % 50));
  return { ids: [...text.slice(0, 5), engine.config.imageTokenId, ...text.slice(5)], pixels: [pixels] };
}

/**
 * The first image's visual tokens left at the end of prefill: after a decoder step, what it kept (in-decoder methods
 * keep every token for their first layers); otherwise what the decoder received (a tiled image's tower steps run
 * per tile).
 */
export function keptVisualTokens(result: GenerationResult): number {
  const lastStep = result.steps.at(-1);
  return lastStep?.site.startsWith('llm:') ? lastStep.tokensAfter : result.visualTokens[0].atDecoder;
}

/**
 * Plans every method at every budget for images of these sizes (a model that sees every image at one size plans the
 * same for any), so that a setting the model cannot run (a budget above the visual tokens an image brings, a parameter
 * the method lacks) is refused before the first timed or scored run, not after the runs before it.
 */
export function checkReductions(
  engine: LlavaEngine,
  methods: readonly string[],
  budgets: readonly Budget[],
  params: Record<string, ParamValue>,
  sizes: readonly Size[],
): void {
  for (const method of methods)
    for (const budget of budgets) {
      let smallest: BudgetAboveTokensError | undefined;
      for (const size of engine.config.tiling ? sizes : sizes.slice(0, 1))
        try {
          engine.reductionHooks({ method, budget, params }, [size]);
        } catch (error) {
          if (!(error instanceof BudgetAboveTokensError)) throw error;
          if (!smallest || error.tokens < smallest.tokens) smallest = error;
        }
      // The chat's words say to turn reduction off; a budget list is told the bound every image fits, not the first's.
      if (smallest) throw budgetAboveTokens(smallest.budget, smallest.tokens, smallest.image);
    }
}

/** One generation of 1 + `decode` tokens, timed. */
export async function timedPrefill(
  engine: LlavaEngine,
  prompt: Prompt,
  hooks: ReductionHook[],
  decode = 0,
): Promise<Sample> {
  const ticksBefore = cpuTicks();
  const faultsBefore = process.resourceUsage().majorPageFault;
  const started = performance.now();
  let ttftMs = 0;
  const result = await engine.generate(prompt.ids, prompt.pixels, {
    maxNewTokens: decode + 1,
    stopTokenIds: [],
    hooks,
    onToken: () => (ttftMs ||= performance.now() - started),
  });
  const ticksAfter = cpuTicks();
  return {
    visionMs: result.timings.visionMs,
    llmMs: result.timings.prefillMs,
    ttftMs,
    stepsMs: result.steps.reduce((sum, step) => sum + step.ms, 0),
    stepsCpuMs: result.steps.reduce((sum, step) => sum + step.cpuMs, 0),
    visionCpuMs: result.timings.visionCpuMs,
    llmCpuMs: result.timings.prefillCpuMs,
    stealShare:
      ticksBefore && ticksAfter
        ? (ticksAfter.steal - ticksBefore.steal) / Math.max(1, ticksAfter.total - ticksBefore.total)
        : Number.NaN,
    majorFaults: process.resourceUsage().majorPageFault - faultsBefore,
    keptTokens: keptVisualTokens(result),
    visionFlops: result.flops.run.vision + result.flops.run.projector,
    llmFlops: result.flops.run.llm,
    llmCausalFlops: result.flops.causalLlm,
    ...(decode > 0 ? { decodeTokensPerSecond: (decode * 1000) / result.timings.decodeMs } : {}),
  };
}

export interface GroupOptions {
  runs: number;
  decode: number;
  /** multiplies LLM milliseconds (a cut decoder scaled to full depth) */
  llmScale: number;
  /** the method's parameters (its defaults where absent) */
  params?: Record<string, ParamValue>;
}

/**
 * One method at several budgets: a warm-up prefill (it builds the method's sessions), then `runs` rounds of
 * [unreduced on `reference`, each budget on `engine`]; the first round also decodes `decode` tokens.
 * Returns the method's rows and the round's unreduced samples.
 */
export async function measureMethod(
  engine: LlavaEngine,
  reference: LlavaEngine,
  prompt: Prompt,
  method: string,
  budgets: readonly Budget[],
  options: GroupOptions,
): Promise<{ rows: Row[]; unreduced: Sample[] }> {
  const sizes = prompt.pixels.map((image) => image.size);
  const params = options.params ?? {};
  const plans = budgets.map((budget) => engine.reductionHooks({ method, budget, params }, sizes));
  await timedPrefill(engine, prompt, plans[0]);
  const unreduced: Sample[] = [];
  const samples: Sample[][] = budgets.map(() => []);
  const ratios: number[][] = budgets.map(() => []);
  const cpuRatios: number[][] = budgets.map(() => []);
  const llmRatios: number[][] = budgets.map(() => []);
  for (let round = 0; round < options.runs; round++) {
    const before = await timedPrefill(reference, prompt, []);
    unreduced.push(before);
    for (const [i, hooks] of plans.entries()) {
      const sample = await timedPrefill(engine, prompt, hooks, round === 0 ? options.decode : 0);
      samples[i].push(sample);
      ratios[i].push(prefillMs(before, options.llmScale) / prefillMs(sample, options.llmScale));
      cpuRatios[i].push(prefillCpuMs(before, options.llmScale) / prefillCpuMs(sample, options.llmScale));
      llmRatios[i].push(before.llmMs / sample.llmMs);
    }
  }
  const rows = budgets.map((budget, i) =>
    summarize(
      method,
      budgetLabel(budget),
      samples[i],
      { wall: ratios[i], cpu: cpuRatios[i], llm: llmRatios[i] },
      options.llmScale,
    ),
  );
  return { rows, unreduced };
}

/** The unreduced row from every unreduced sample of a run; its speedup is 1 by definition. */
export function unreducedRow(samples: readonly Sample[], llmScale: number): Row {
  const ones = samples.map(() => 1);
  return summarize('none', 'all', samples, { wall: ones, cpu: ones, llm: ones }, llmScale);
}

function summarize(
  method: string,
  budget: string,
  samples: readonly Sample[],
  ratios: { wall: readonly number[]; cpu: readonly number[]; llm: readonly number[] },
  llmScale: number,
): Row {
  const of = (
    key: 'visionMs' | 'llmMs' | 'ttftMs' | 'stepsMs' | 'stepsCpuMs' | 'visionCpuMs' | 'llmCpuMs' | 'stealShare',
  ) => median(samples.map((s) => s[key]));
  const decoded = samples.find((s) => s.decodeTokensPerSecond !== undefined);
  const last = samples[samples.length - 1];
  return {
    method,
    budget,
    visionMs: of('visionMs'),
    llmMs: of('llmMs'),
    ttftMs: of('ttftMs'),
    stepsMs: of('stepsMs'),
    stepsCpuMs: of('stepsCpuMs'),
    visionCpuMs: of('visionCpuMs'),
    llmCpuMs: of('llmCpuMs'),
    stealShare: of('stealShare'),
    majorFaults: samples.reduce((sum, s) => sum + s.majorFaults, 0),
    keptTokens: last.keptTokens,
    visionFlops: last.visionFlops,
    llmFlops: last.llmFlops,
    llmCausalFlops: last.llmCausalFlops,
    decodeTokensPerSecond: decoded?.decodeTokensPerSecond ?? Number.NaN,
    pairedSpeedup: median(ratios.wall),
    pairedCpuSpeedup: median(ratios.cpu),
    pairedLlmSpeedup: median(ratios.llm),
    prefills: samples.map((s) => prefillMs(s, llmScale)),
  };
}

/**
 * The machine's CPU ticks since boot (/proc/stat): all of them, and those stolen by the hypervisor; undefined where
 * there is no /proc.
 */
export function cpuTicks(): { total: number; steal: number } | undefined {
  try {
    // user nice system idle iowait irq softirq steal (guest time is already inside user)
    const ticks = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1, 9).map(Number);
    return { total: ticks.reduce((sum, t) => sum + t, 0), steal: ticks[7] ?? 0 };
  } catch {
    return undefined;
  }
}

/** One sentence naming the machine a benchmark ran on, its vector instructions, and the date. */
export function machineLine(provider = 'cpu', threads?: number): string {
  const cpu = os.cpus();
  const vector = vectorExtensions();
  const intraOp = threads
    ? `${threads} intra-op thread${threads === 1 ? '' : 's'}`
    : "ORT's default intra-op threads (one per physical core)";
  return (
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}${vector ? ` (${vector})` : ''}, ` +
    `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ONNX Runtime ${provider} provider with ${intraOp}, Node ` +
    `${process.versions.node}; ${new Date().toISOString().slice(0, 10)}.`
  );
}

/**
 * The x86 vector extensions ONNX Runtime's and llama.cpp's kernels pick between, from /proc/cpuinfo: machines that
 * report the same model name can differ here, and int8 / int4 speed with them.
 */
function vectorExtensions(): string {
  let info: string;
  try {
    info = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
  const flags = new Set(/^flags\s*:(.*)$/m.exec(info)?.[1].trim().split(/\s+/) ?? []);
  return ['avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8'].filter((flag) => flags.has(flag)).join(' ');
}

/** A width × height screenshot-like image: a light page, a dark title bar, and a grid of coloured boxes. */
export function syntheticScreenshot({ width, height }: { width: number; height: number }): RgbImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const box = (Math.floor(x / 97) * 7 + Math.floor(y / 61) * 3) % 5;
      const inBox = x % 97 > 12 && y % 61 > 10;
      const i = (y * width + x) * 3;
      const [r, g, b] =
        y < 32 ? [40, 40, 48] : inBox ? [60 + 40 * box, 200 - 30 * box, 90 + 25 * box] : [245, 245, 240];
      rgb.set([r, g, b], i);
    }
  }
  return { width, height, rgb };
}

/** A smooth pattern as one side × side image's pixel values (one vision pass). */
export function syntheticPixels(side: number): ImagePixels {
  return {
    values: Float32Array.from({ length: 3 * side * side }, (_, i) => Math.sin(i * 0.001)),
    size: { width: side, height: side },
  };
}

/** The process's peak resident memory so far, in MiB. */
export function peakResidentMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}
