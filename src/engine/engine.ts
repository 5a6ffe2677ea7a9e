import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { FicocoError } from '../common/errors';
import { type AnyresLayout, type Size, anyresLayout } from '../common/anyres';
import { llmLayerFlops } from '../flops/llm';
import {
  type ImageCost,
  type ModelArch,
  RunFlops,
  imageCost,
  peakRunBytes,
  runFlops,
  unreducedShapeAt,
} from '../flops/model';
import { ElemType } from './graph/builder';
import { HIDDEN_COSINE, POSITIONS } from './graph/segment';
import { type ModelShape, ReductionSettingsError } from '../reduction/method';
import { BUDGET_HINT, budgetLabel, readableBudget } from '../common/budget';
import { formatGibibytes } from '../common/bytes';
import { AUTO_METHOD, NO_REDUCTION, type ReductionRequest } from '../common/reductionChoice';
import { checkedRequest, planHooks, planReduction } from '../reduction/registry';
import { planTiledReduction } from '../reduction/tiled';
import { selectRows } from '../reduction/arrays';
import { stepHook } from '../reduction/paradigm';
import {
  AttentionNeeds,
  HookSite,
  ReductionHook,
  TokenState,
  VisualSpan,
  hooksBySite,
  siteStage,
} from '../reduction/tokenState';
import { decodeImage } from './image/decode';
import { blankPng } from './image/png';
import {
  ImagePreprocessorConfig,
  checkMakesTowerInput,
  parsePreprocessorConfig,
  preprocessImage,
  seenRegion,
} from './image/preprocess';
import type { RgbImage } from './image/rgb-image';
import { preprocessTiles } from './image/tiles';
import type { ModelConfig, ModelTowers } from './models/family';
import { flopsArchOf } from './models/flopsArch';
import { LOGITS } from './models/llama';
import { parseModelConfig } from './models/registry';
import type { PackedImage } from './models/tiledFeatures';
import { contentTokens } from './structureTokens';
import { PrefillWatch, type PrefillWatchOptions, RunPace } from './prefillWatch';
import { DEFAULT_MAX_NEW_TOKENS, checkAnswerOptions, checkLogits, checkQuestion, textTurn } from './askChecks';
import { checkSamePinpoints, checkWeightsFit, commonFolder, screenshotQuestionBytes } from './loadChecks';
import { startClock } from './clock';
import { type LayerTokens, type PassTokens, countLayerTokens, prefillFlops } from './layerTokens';
import { hookView, patchFates, runHook } from './hookCall';
import { spliceImages } from './spliceImages';
import { type ImagePixels, VisionPasses } from './visionPasses';
import { PREFILL_CHUNK_TOKENS, equalChunkTokens, promptChunkTokens } from './promptChunks';
import type { PrefillProgress } from '../common/prefillProgress';
import { GatheredExposure, RowProducts } from './runtime/gatheredExposure';
import { KvCache } from './runtime/kvCache';
import { ProviderName, SessionFactory, probeProviders, providerCandidates, thisMachine } from './runtime/provider';
import { GREEDY, SamplingOptions, createSampler } from './runtime/sampling';
import { defaultThreads, thisMachineCores } from './runtime/threads';
import { Segment, TowerRunner } from './runtime/towerRunner';
import { ChatMessage, PromptTooLongError, StreamingDecoder, TextProcessor } from './text';
import { readModelJson } from './text/json-file';
import { WeightIndex } from './weights/safetensors';
import { availableMemory as systemAvailableMemory, memoryInAll } from '../common/memory';
import { quantizedParts } from '../common/quantization';
import { WeightQuantizer } from './weights/quantizedCache';
import { cpuWeightBytes } from './weights/footprint';
import { type PublishedReduction, type ReductionChoice, chooseReduction } from './recommendation';
import type { Answer, AskRequest, EngineOptions, PatchFates, StepStat } from './api';

export type { ImagePixels } from './visionPasses';
export type { Answer, AnswerStats, AskRequest, EngineOptions, PatchFates, StepStat } from './api';

interface RunLimits {
  availableMemory: () => number;
  prefillChunkTokens: number;
  warmUpRepeatsBelowFlops: number;
}

export interface GenerateOptions {
  maxNewTokens: number;
  sampling?: SamplingOptions;
  /** generation stops after emitting one of these (defaults to the model's stop tokens) */
  stopTokenIds?: readonly number[];
  hooks?: readonly ReductionHook[];
  onToken?: (tokenId: number) => void;
  /**
   * checked between tower passes, prompt chunks and decode steps: aborted before the first token, generation rejects
   * with a 'cancelled' FicocoError; after it, it returns the tokens so far
   */
  signal?: AbortSignal;
  /** after each tower pass and each prompt chunk */
  onProgress?: (progress: PrefillProgress) => void;
}

export interface GenerationResult {
  tokenIds: number[];
  stopReason: Answer['stopReason'];
  /** logits of the last prefill position */
  prefillLogits: Float32Array;
  /** the visual tokens of each image as the decoder first receives them (after vision-side reduction) */
  visualTokens: { original: number; atDecoder: number }[];
  /** tokens entering the decoder at prefill */
  promptTokens: number;
  steps: StepStat[];
  /** per image, what reduction did to its patches (all k without reduction) */
  patchFates: PatchFates[];
  /** per-layer KV cache lengths after prefill */
  cacheLengths: number[];
  /**
   * analytic FLOPs of this prefill and of the same prompt without reduction (LLM-Viewer accounting, src/flops), and
   * this prefill's decoder FLOPs counting only the attention scores its causal mask keeps
   */
  flops: { run: RunFlops; unreduced: RunFlops; causalLlm: number };
  /**
   * wall time per phase, and the process's CPU time (all threads) in vision and prefill: unlike wall time, CPU time
   * does not grow when the machine is busy elsewhere
   */
  timings: { visionMs: number; prefillMs: number; decodeMs: number; visionCpuMs: number; prefillCpuMs: number };
}

export type { PrefillProgress, ReductionRequest };

/** Unreduced prefills below this many FLOPs take a fraction of a second on a CPU, so warming up runs a few. */
const WARM_UP_PREFILL_FLOPS = 20e9;
/** V8 optimises a function after a few calls: three runs bring the first answer to the speed of later ones. */
const WARM_UP_RUNS = 3;
const WARM_UP_IMAGE_SIDE = 32;
/**
 * A cosine matrix at `packed` larger than this gets an ONNX Runtime session of its own (a tiled screenshot's: 208 MB on
 * LLaVA-OneVision at 1080p); smaller ones (an untiled image's 576 tokens: 1.3 MB) reuse the engine's.
 */
const OWN_SESSION_BYTES = 16 * 2 ** 20;

const MODEL_FILES = 'config.json, *.safetensors, tokenizer.json, tokenizer_config.json and preprocessor_config.json';

/** A loaded LLaVA model folder, ready to answer questions about images. */
export class LlavaEngine {
  private constructor(
    readonly modelDir: string,
    readonly config: ModelConfig,
    readonly text: TextProcessor,
    private readonly preprocessor: ImagePreprocessorConfig,
    private readonly towers: ModelTowers,
    private readonly factory: SessionFactory,
    private readonly runners: { vision: TowerRunner; embed: TowerRunner; decoder: TowerRunner },
    private readonly limits: RunLimits,
    private readonly publishedReduction: PublishedReduction | undefined,
    /** what weight quantization took, in words ("int8 (decoder and vision tower)"); undefined without it */
    readonly quantizedWeights: string | undefined,
    /** the FLOPs model's description of this model */
    private readonly arch: ModelArch,
  ) {
    this.unitFlops = runUnitFlops(arch);
    this.visionPasses = new VisionPasses(config, towers, arch);
  }

  /** the latest run asked for (inTurn); the next one starts when it ends */
  private runs: Promise<unknown> = Promise.resolve();
  /** questions in flight (ask), which dispose lets end before the chat template's process goes */
  private readonly asking = new Set<Promise<unknown>>();
  /** aborted by dispose: runs in flight stop at their next check, and later ones are refused */
  private readonly closing = new AbortController();

  /** multiplies out what decoder hooks read over a whole prompt from the rows its chunks gave; made on first use */
  private rowProducts: RowProducts | undefined;
  /** how fast this engine's tower passes and prompt chunks have gone, for the time of the next one */
  private readonly pace = new RunPace();
  /** what RunPace's rates are per: FLOPs of an unreduced tower pass, of a token through a block, of a query-key pair */
  private readonly unitFlops: PrefillWatchOptions['flops'];
  /** runs an image's passes through the vision tower and packs them for the decoder */
  private readonly visionPasses: VisionPasses;

  static async load(modelDir: string, options: EngineOptions = {}): Promise<LlavaEngine> {
    const dir = path.resolve(modelDir);
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
      throw new FicocoError(
        `${modelDir} is not a folder; expected a Hugging Face model folder with ${MODEL_FILES}.`,
        'model-folder',
      );
    }
    const configFile = path.join(dir, 'config.json');
    if (!fs.existsSync(configFile)) {
      throw new FicocoError(
        `${dir} is not a model folder: config.json is missing (expected ${MODEL_FILES}).`,
        'model-folder',
      );
    }
    const model = parseModelConfig(readModelJson(configFile), configFile);
    const { config } = model;
    const arch = flopsArchOf(config, path.basename(dir));
    const weights = WeightIndex.open(dir);
    const quantization = options.quantization ?? 'none';
    const { candidates, failures } = await probeProviders(
      providerCandidates(options.provider ?? 'cpu', thisMachine()),
      options.precision,
    );
    const totalMemory = options.totalMemory ?? memoryInAll;
    const availableMemory = options.availableMemory ?? systemAvailableMemory;
    const quantizerFor = (oneForm: boolean) =>
      quantization === 'none'
        ? undefined
        : new WeightQuantizer(weights, quantization, {
            onCpu: candidates[0] === 'cpu',
            cacheDir: options.quantizedCacheDir,
            oneForm,
          });
    let quantizer = quantizerFor(false);
    let towers = model.build(weights, quantizer);
    // int8 on the CPU holds a decoder layer for prompts and again for decode steps: only where both leave room for a
    // question about a screenshot, else the first alone.
    if (quantizer?.cachesTwoForms) {
      const room = Math.min(availableMemory(), totalMemory()) - screenshotQuestionBytes(arch);
      if (cpuWeightBytes(weights, quantizer) > room) {
        quantizer = quantizerFor(true);
        towers = model.build(weights, quantizer);
      }
    }
    /** Refuses weights the CPU could not hold; `fellBack` says why a GPU provider was not used, where one was not. */
    const checkFitsCpu = (fellBack?: string) =>
      checkWeightsFit(
        cpuWeightBytes(weights, quantizer),
        totalMemory(),
        quantization,
        (mode) => {
          const alternative = new WeightQuantizer(weights, mode, { onCpu: true, oneForm: true });
          model.build(weights, alternative);
          return cpuWeightBytes(weights, alternative);
        },
        fellBack,
      );
    // A GPU provider that failed its probe is why the CPU would run the model: the refusal says so.
    if (candidates[0] === 'cpu') checkFitsCpu(failures.length > 0 ? failures.join('; ') : undefined);
    const text = TextProcessor.load(dir, { id: config.imageTokenId }, { vocabSize: config.text.vocabSize });
    // From here a failed load stops the chat template's process, which the template check starts.
    try {
      await text.checkTemplate();
      const preprocessorFile = path.join(dir, 'preprocessor_config.json');
      if (!fs.existsSync(preprocessorFile)) {
        throw new FicocoError(
          `${dir} lacks preprocessor_config.json (the image processor settings); expected ${MODEL_FILES}.`,
          'model-folder',
        );
      }
      const preprocessorJson = readModelJson(preprocessorFile);
      const preprocessor = parsePreprocessorConfig(preprocessorJson, preprocessorFile);
      const [, side] = towers.vision.input.dims as number[];
      if (config.tiling) {
        checkSamePinpoints(config.tiling, preprocessorJson, preprocessorFile);
        // Tiles come cut to the tower's size; images seen whole (several in a question) are padded to squares first.
        checkMakesTowerInput(preprocessor, side, preprocessorFile, { shapes: [[1, 1]], when: ' (a tile)' });
        if (config.squareWhenSeveral)
          checkMakesTowerInput({ ...preprocessor, padToSquare: true }, side, preprocessorFile, {
            when: ' (padded to a square, as when several images share a question)',
          });
      } else checkMakesTowerInput(preprocessor, side, preprocessorFile);
      const quantized = await quantizer?.materialize(options.onQuantizing);
      // External data resolves against one folder: the weights', or one above a quantized cache kept elsewhere.
      const weightsFolder = commonFolder([...weights.files, ...(quantized ? [quantized] : [])], dir);
      const factory = new SessionFactory({
        weightsFolder,
        candidates,
        failures,
        precision: options.precision,
        threads: options.threads ?? defaultThreads(smallPrefillFlops(arch), options.cores ?? thisMachineCores()),
        beforeCpuFallback: (reasons) => checkFitsCpu(reasons.join('; ')),
      });
      const runners = {
        vision: new TowerRunner(towers.vision, factory),
        embed: new TowerRunner(towers.embed, factory),
        decoder: new TowerRunner(towers.decoder, factory, true),
      };
      const engine = new LlavaEngine(
        dir,
        config,
        text,
        preprocessor,
        towers,
        factory,
        runners,
        {
          availableMemory,
          prefillChunkTokens: options.prefillChunkTokens ?? PREFILL_CHUNK_TOKENS,
          warmUpRepeatsBelowFlops: options.warmUpRepeatsBelowFlops ?? WARM_UP_PREFILL_FLOPS,
        },
        model.publishedReduction,
        quantizer && quantizedParts(quantizer.mode, quantizer.quantizesVisionTower, quantizer.holdsOneForm),
        arch,
      );
      // Build the unreduced sessions now: load errors surface here and the first answer is not slowed. All are
      // settled before a failure is thrown, so the sessions the others built are released with the engine.
      const built = await Promise.allSettled(Object.values(runners).map((runner) => runner.segments(new Map())));
      const failed = built.find((result) => result.status === 'rejected');
      if (failed) {
        await engine.dispose();
        throw failed.reason;
      }
      return engine;
    } catch (error) {
      text.dispose();
      throw error;
    }
  }

  get provider(): ProviderName {
    return this.factory.provider ?? 'cpu';
  }

  /** intra-op threads each session starts: EngineOptions.threads, or what defaultThreads chose */
  get threads(): number | undefined {
    return this.factory.threads;
  }

  get providerFallback(): string | undefined {
    return this.factory.fallbackReason;
  }

  /** Original patch grid of one image. */
  get grid(): { rows: number; cols: number } {
    return this.towers.image.grid;
  }

  /** What reduction methods need to know to place their steps. */
  get reductionShape(): ModelShape {
    return {
      visionLayers: this.config.visionLayers,
      textLayers: this.config.text.layers,
      visualTokens: this.grid.rows * this.grid.cols,
      grid: this.grid,
      hasClassToken: this.towers.image.classToken,
    };
  }

  /** Image features per image without reduction: every patch, plus the class token where the family keeps it. */
  get unreducedFeatureCount(): number {
    return this.grid.rows * this.grid.cols + (this.towers.image.classToken && this.config.classTokenInFeatures ? 1 : 0);
  }

  /**
   * Stops the questions in flight (an answer begun ends as cancelled with its tokens so far, one not yet begun rejects
   * with a 'cancelled' FicocoError), lets them end, then releases the sessions and the chat template's process; later
   * questions are refused.
   */
  async dispose(): Promise<void> {
    this.closing.abort();
    await Promise.allSettled([...this.asking, this.runs]);
    this.text.dispose();
    await Promise.all([...Object.values(this.runners).map((runner) => runner.release()), this.rowProducts?.release()]);
  }

  /** Refuses work once dispose has begun: its sessions would be released under it, or built again for good. */
  private checkOpen(): void {
    if (this.closing.signal.aborted)
      throw new FicocoError('This engine has been disposed; load the model again to ask about images.', 'cancelled');
  }

  /**
   * Makes the first answer with `reduction` (none: unreduced) as fast as later ones. Where a prefill is cheap it asks
   * about a blank image a few times, so V8 has optimised the image decoder, the reduction steps and the decode loop. On
   * a large model (their compile is a few ms against a prefill of seconds) it builds the plan's sessions, runs one pass
   * of its vision tower, and asks one short question without an image, which gives the engine its pace.
   */
  async warmUp(reduction?: ReductionRequest): Promise<void> {
    this.checkOpen();
    const blank = { width: WARM_UP_IMAGE_SIDE, height: WARM_UP_IMAGE_SIDE };
    const choice = reduction && this.chooseReduction(reduction);
    let hooks: ReductionHook[] = [];
    try {
      hooks = this.hooksOf(choice, [blank]);
    } catch (error) {
      // A tiled model's tokens grow with the image: a token budget its small blank image cannot hold is for the real
      // images to check (chooseReduction checked the request itself); the warm-up goes on without it.
      if (!this.config.tiling || !(error instanceof ReductionSettingsError)) throw error;
      reduction = undefined;
    }
    if (smallPrefillFlops(this.arch) > this.limits.warmUpRepeatsBelowFlops) {
      await this.inTurn(() => this.warmTowerPass(hooksBySite(hooks)));
      // One short question without an image: its prompt sets the pace the first image pass is foretold by (how long
      // Stop waits for it before ending the process), and the weights are read once before a real question.
      await this.ask({ question: 'warm up', images: [], maxNewTokens: 1 });
      return;
    }
    const image = { bytes: blankPng(WARM_UP_IMAGE_SIDE, WARM_UP_IMAGE_SIDE), name: 'warm-up.png' };
    for (let run = 0; run < WARM_UP_RUNS; run++)
      await this.ask({ question: 'warm up', images: [image], reduction, maxNewTokens: 1 });
  }

  /**
   * Builds a plan's sessions and runs its vision tower, hooks and all, over one pass of a blank image: each segment's
   * memory arena grows to a pass's working set here, not in the first question (FiCoCo-V cutting OneVision-0.5B's
   * tower at every layer: a 1080p question 30 s after a warm-up without it, 22 s later).
   */
  private async warmTowerPass(hooks: Map<HookSite, ReductionHook>): Promise<void> {
    const [visionSegments] = await this.segmentsFor(hooks);
    const pixels = await this.pixelValues(blankPng(WARM_UP_IMAGE_SIDE, WARM_UP_IMAGE_SIDE), 'warm-up.png');
    // A tiled image's first pass is its base image: a full pass, as each tile is.
    const firstPass = { ...pixels, values: pixels.values.subarray(0, this.visionPasses.passSize) };
    const watch = new PrefillWatch({ passes: 1, pace: this.pace, flops: this.unitFlops });
    await this.visionPasses.encodePasses(firstPass, 0, visionSegments, hooks, { watch, steps: [], visionTokens: [] });
  }

  /** Decodes and preprocesses an image file's bytes into the vision tower's pixel values. */
  async pixelValues(bytes: Uint8Array, name: string): Promise<ImagePixels> {
    return this.imagePixels(await decodeImage(bytes, name));
  }

  /**
   * A decoded image's pixel values: one pass, or for a tiled model its base image and tiles — unless it is one of
   * `several` images and the model then sees each whole, padded to a square of the mean colour.
   */
  imagePixels(image: RgbImage, several = false): ImagePixels {
    const { tiling, squareWhenSeveral } = this.config;
    const size = { width: image.width, height: image.height };
    if (tiling && !(several && squareWhenSeveral))
      return { values: preprocessTiles(image, this.preprocessor, tiling).pixelValues, size };
    return { values: preprocessImage(image, this.wholeImageConfig()).pixelValues, size };
  }

  /** How an image seen whole is preprocessed: a tiled model's, padded to a square of the mean colour. */
  private wholeImageConfig(): ImagePreprocessorConfig {
    return this.config.tiling ? { ...this.preprocessor, padToSquare: true } : this.preprocessor;
  }

  /** Tower passes and unreduced visual tokens of preprocessed pixels (a tiled model's image seen whole: one pass). */
  private costOf(image: ImagePixels): ImageCost {
    const passes = image.values.length / this.visionPasses.passSize;
    const { tiling } = this.config;
    if (!tiling) return { passes, tokens: this.unreducedFeatureCount };
    return { passes, tokens: passes === 1 ? tiling.baseTokens + 1 : anyresLayout(tiling, image.size).tokens };
  }

  async ask(request: AskRequest): Promise<Answer> {
    this.checkOpen();
    const asked = this.askNow(request);
    this.asking.add(asked);
    try {
      return await asked;
    } finally {
      this.asking.delete(asked);
    }
  }

  private async askNow(request: AskRequest): Promise<Answer> {
    const started = performance.now();
    checkQuestion(request.question);
    checkAnswerOptions(request);
    const history = (request.history ?? []).map((message, index) => textTurn(message, index));
    const decoded = await Promise.all(request.images.map((image) => decodeImage(image.bytes, image.name)));
    const pixels = decoded.map((image) => this.imagePixels(image, decoded.length > 1));
    const content: ChatMessage['content'] = [
      ...request.images.map(() => ({ type: 'image' as const })),
      { type: 'text' as const, text: request.question },
    ];
    const fitted = await this.fitPrompt(
      history.map((message) => this.text.withoutImageMarks(message)),
      this.text.withoutImageMarks({ role: 'user', content }),
      request.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS,
      pixels.map((image) => this.costOf(image)),
    );
    const { inputIds } = fitted;
    const preprocessMs = performance.now() - started;
    const streaming = new StreamingDecoder(this.text);
    let firstTextAt: number | undefined;
    const chosen = request.reduction && this.chooseReduction(request.reduction);
    // A question without images has no visual tokens to reduce: it runs unreduced, with no reduction in its stats (a
    // bad setting was still refused, by chooseReduction).
    const reduction = pixels.length > 0 ? this.fittedToImages(chosen, pixels.length) : undefined;
    const planned = this.hooksOf(
      reduction,
      pixels.map((image) => image.size),
    );
    const result = await this.generate(inputIds, pixels, {
      maxNewTokens: fitted.maxNewTokens,
      sampling: request.sampling,
      hooks: [...planned, ...(request.hooks ?? [])],
      signal: request.signal,
      onProgress: request.onProgress,
      onToken: (id) => {
        firstTextAt ??= performance.now();
        const piece = streaming.push(id);
        if (piece) request.onText?.(piece);
      },
    });
    const rest = streaming.flush();
    if (rest) request.onText?.(rest);
    const { timings } = result;
    const decodedAfterFirst = result.tokenIds.length - 1;
    return {
      text: this.text.decode(result.tokenIds.filter((id) => !this.text.stopTokenIds.includes(id))),
      tokenIds: result.tokenIds,
      stopReason: result.stopReason,
      stats: {
        ...(reduction
          ? {
              reduction: {
                method: reduction.method,
                budget: reduction.method === NO_REDUCTION ? 'all' : budgetLabel(reduction.budget),
                params: reduction.params,
                rule: reduction.rule,
                why: reduction.why,
              },
            }
          : {}),
        promptTokens: result.promptTokens,
        generatedTokens: result.tokenIds.length,
        visualTokens: result.visualTokens,
        imageSizes: decoded.map(({ width, height }) => ({ width, height })),
        steps: result.steps,
        ...(result.steps.length > 0 ? { patchFates: result.patchFates } : {}),
        preprocessMs,
        visionMs: timings.visionMs,
        prefillMs: timings.prefillMs,
        ttftMs: (firstTextAt ?? performance.now()) - started,
        decodeTokensPerSecond:
          decodedAfterFirst > 0 && timings.decodeMs > 0 ? (decodedAfterFirst * 1000) / timings.decodeMs : 0,
        flops: result.flops,
        provider: this.provider,
        ...(this.providerFallback ? { providerFallback: this.providerFallback } : {}),
        ...(fitted.droppedMessages > 0
          ? {
              historyTrimmed: { droppedMessages: fitted.droppedMessages, contextTokens: this.config.text.maxPositions },
            }
          : {}),
      },
    };
  }

  /**
   * What `auto` stands for on this model: its folder's measured recommendation (ficoco tune), else the setting
   * published for its architecture, else FiCoCo's default (recommendation.ts). Read when asked, so a new
   * recommendation applies without reloading the model.
   */
  get autoReduction(): ReductionChoice {
    return chooseReduction(this.modelDir, this.reductionShape, this.publishedReduction);
  }

  /**
   * The reduction a request stands for, and which rule chose it (none for `none`, as without a request); a method,
   * budget or parameter that is not valid is refused here, whatever images the question has.
   */
  chooseReduction(reduction: ReductionRequest): ReductionChoice | undefined {
    if (reduction.method === AUTO_METHOD) return this.autoReduction;
    // `none` needs no budget: the CLI, the server and the settings all take it without one.
    if (reduction.method === NO_REDUCTION) return undefined;
    if (!reduction.budget) throw new ReductionSettingsError(`${reduction.method} needs a budget: ${BUDGET_HINT}.`);
    checkedRequest(reduction.method, reduction.budget, reduction.params);
    return {
      method: reduction.method,
      budget: reduction.budget,
      params: { ...reduction.params },
      rule: 'setting',
      why: 'Chosen by you (ficoco.reduction.method, --method on the command line, or a request to ficoco serve).',
    };
  }

  /**
   * `auto`'s choice where this model cannot reduce the question's images (a tiled model reduces one image per
   * question) gives way to every visual token and says why; a method the user chose is refused there (hooksOf).
   */
  private fittedToImages(choice: ReductionChoice | undefined, images: number): ReductionChoice | undefined {
    if (!choice || choice.rule === 'setting' || choice.method === NO_REDUCTION || !this.config.tiling || images === 1)
      return choice;
    return {
      ...choice,
      method: NO_REDUCTION,
      params: {},
      why:
        `auto would use ${choice.method} at ${readableBudget(choice.budget)}, but this model reduces one image per ` +
        `question and this one has ${images}: every visual token is used. (${choice.why})`,
    };
  }

  /** The hooks `reduction` runs for a question about images of these sizes (what ask plans). */
  reductionHooks(reduction: ReductionRequest, images: readonly Size[]): ReductionHook[] {
    return this.hooksOf(this.chooseReduction(reduction), images);
  }

  /** The hooks of a reduction for a question about images of these sizes. */
  private hooksOf(choice: ReductionChoice | undefined, images: readonly Size[]): ReductionHook[] {
    if (!choice || choice.method === NO_REDUCTION) return [];
    const { tiling } = this.config;
    if (!tiling) return planHooks(planReduction(choice.method, choice.budget, this.reductionShape, choice.params));
    if (images.length !== 1)
      throw new ReductionSettingsError(
        `Token reduction on a tiled model takes one image per question, and this one has ${images.length}; ` +
          'ask about one image at a time, or choose method "none".',
      );
    return this.tiledHooks(choice, anyresLayout(tiling, images[0]), images[0]);
  }

  /** A tiled image's reduction (planTiledReduction): steps on every tower pass, then on the packed image. */
  private tiledHooks(choice: ReductionChoice, layout: AnyresLayout, size: Size): ReductionHook[] {
    const plan = planTiledReduction(choice, this.reductionShape, { size, layout });
    return [...plan.perPass, ...plan.onPacked].map((step) => stepHook(step));
  }

  /** Prompt tokens once each image's placeholder is replaced by its features (before any reduction). */
  private promptTokens(inputIds: readonly number[], images: readonly ImageCost[]): number {
    return images.reduce((sum, image) => sum + image.tokens - 1, inputIds.length);
  }

  /**
   * The prompt of `question` after as many of the latest history messages as fit the model's context (maxPositions)
   * beside the answer, and the answer's token limit. History is kept whole when it fits, else trimmed from the oldest
   * user turn on, and never takes room the answer would have without it; a question that cannot fit alone is refused.
   */
  private async fitPrompt(
    history: ChatMessage[],
    question: ChatMessage,
    maxNewTokens: number,
    images: readonly ImageCost[],
  ): Promise<{ inputIds: number[]; droppedMessages: number; maxNewTokens: number }> {
    const limit = this.config.text.maxPositions;
    const firstNotSystem = history.findIndex((message) => message.role !== 'system');
    const pinned = firstNotSystem < 0 ? history.length : firstNotSystem;
    const encodeFrom = async (start: number) =>
      this.text.encode(await this.text.renderPrompt([...history.slice(0, pinned), ...history.slice(start), question]));
    let best = { inputIds: await encodeFrom(history.length), start: history.length };
    const alone = this.promptTokens(best.inputIds, images);
    if (alone >= limit) {
      throw new FicocoError(
        `The question and its ${images.length} image(s) make a ${alone}-token prompt, and this model reads at most ` +
          `${limit} tokens ` +
          '(max_position_embeddings, or a sliding_window below it, in config.json); ask a shorter question, or about ' +
          'fewer images at once.',
        'input',
      );
    }
    const answerRoom = Math.min(maxNewTokens, limit - alone);
    // Binary search for the earliest user turn from which the history still fits: fewer messages, fewer tokens.
    // The whole history first, though it may open with the assistant's message (a greeting).
    const starts = [pinned, ...history.flatMap((message, i) => (message.role === 'user' && i > pinned ? [i] : []))];
    let [low, high] = [0, starts.length];
    while (low < high) {
      const middle = (low + high) >> 1;
      // History with more text than a prompt may hold does not fit either.
      const inputIds = await encodeFrom(starts[middle]).catch((error: unknown) => {
        if (error instanceof PromptTooLongError) return undefined;
        throw error;
      });
      if (inputIds && this.promptTokens(inputIds, images) + answerRoom <= limit) {
        best = { inputIds, start: starts[middle] };
        high = middle;
      } else {
        low = middle + 1;
      }
    }
    const droppedMessages = best.start - pinned;
    return {
      inputIds: best.inputIds,
      droppedMessages,
      maxNewTokens: Math.min(maxNewTokens, limit - this.promptTokens(best.inputIds, images)),
    };
  }

  /**
   * Prefill (vision → projector → splice → decoder) then token-by-token decoding with the KV cache. Runs go one at a
   * time, in the order asked: loading one reduction plan's sessions releases another's, which a run in flight uses.
   */
  generate(
    inputIds: readonly number[],
    images: readonly ImagePixels[],
    options: GenerateOptions,
  ): Promise<GenerationResult> {
    return this.inTurn(() => this.generateNow(inputIds, images, options));
  }

  /** Runs `work` once the runs asked before it have ended; what loads a plan's sessions goes through here. */
  private inTurn<T>(work: () => Promise<T>): Promise<T> {
    const run = this.runs.then(() => {
      this.checkOpen();
      return work();
    });
    this.runs = run.catch(() => undefined);
    return run;
  }

  private async generateNow(
    inputIds: readonly number[],
    images: readonly ImagePixels[],
    options: GenerateOptions,
  ): Promise<GenerationResult> {
    const costs = images.map((image) => this.costOf(image));
    const hooks = hooksBySite(options.hooks ?? []);
    // Stopped by the caller, or by dispose.
    const signal = options.signal ? AbortSignal.any([options.signal, this.closing.signal]) : this.closing.signal;
    // Segments first: loading a plan releases other plans' sessions, and the check counts what their arenas hold.
    const [visionSegments, embedSegments, decoderSegments] = await this.segmentsFor(hooks);
    const maxNewTokens = this.checkRunFits(this.promptTokens(inputIds, costs), options.maxNewTokens, decoderSegments);
    this.checkPackedFits(hooks, costs);
    const steps: StepStat[] = [];
    const watch = new PrefillWatch({
      passes: costs.reduce((passes, cost) => passes + cost.passes, 0),
      signal,
      onProgress: options.onProgress,
      pace: this.pace,
      flops: this.unitFlops,
    });

    const visionClock = startClock();
    const features: PackedImage[] = [];
    const visionTokens: PassTokens[] = [];
    for (const [image, pixels] of images.entries()) {
      const passes = await this.visionPasses.encodePasses(pixels, image, visionSegments, hooks, {
        watch,
        steps,
        visionTokens,
      });
      features.push(
        await this.reducePacked(this.visionPasses.packImage(passes, pixels.size), image, hooks.get('packed'), steps),
      );
    }
    const { ms: visionMs, cpuMs: visionCpuMs } = visionClock();

    const prefillClock = startClock();
    const embedded = await this.embed(inputIds, embedSegments[0], { placeholders: true });
    const { state, structure } = spliceImages(embedded, inputIds, this.config.imageTokenId, features);
    const promptLength = state.count;
    const cache = new KvCache(this.config.text.kvHeads, this.config.text.headDim, this.factory.computeType);
    const decoderTokens: LayerTokens = { attention: [], mlp: [] };
    const prefill = { hooks, steps, layers: decoderTokens, spans: state.spans, structure, watch };
    const prefillLogits = await this.runDecoder(decoderSegments, state, cache, prefill);
    await watch.check();
    // Each decoder segment's arena now holds a working set for a prompt this long (checkRunFits counts new ones).
    for (const { arena } of decoderSegments) arena.promptTokens = Math.max(arena.promptTokens, promptLength);
    const cacheLengths = cache.lengths();
    const { ms: prefillMs, cpuMs: prefillCpuMs } = prefillClock();

    const tokenIds: number[] = [];
    const stopTokens = options.stopTokenIds ?? this.text.stopTokenIds;
    const sample = createSampler(options.sampling ?? GREEDY);
    // What a repetition penalty counts as repeated: the prompt's tokens, as transformers' input_ids, and the answer's.
    const earlierTokens = new Set(inputIds);
    let stopReason: GenerationResult['stopReason'] = 'max-tokens';
    let nextLogits = prefillLogits;
    let firstTokenAt = 0;
    let decodeMs = 0;
    for (let step = 0; step < maxNewTokens; step++) {
      if (signal.aborted) {
        stopReason = 'cancelled';
        break;
      }
      checkLogits(nextLogits, step);
      const token = sample(nextLogits, earlierTokens);
      tokenIds.push(token);
      earlierTokens.add(token);
      // Decoding is the time from the first token to the latest: a step run after it (its answer cancelled) is not.
      if (step === 0) firstTokenAt = performance.now();
      else decodeMs = performance.now() - firstTokenAt;
      options.onToken?.(token);
      if (stopTokens.includes(token)) {
        stopReason = 'stop-token';
        break;
      }
      if (step === maxNewTokens - 1) break;
      // Every generated token continues the original numbering, whatever reduction removed.
      const embeddedToken = await this.embed([token], embedSegments[0], { placeholders: false });
      nextLogits = await this.runDecoder(
        decoderSegments,
        { ...embeddedToken, positions: Int32Array.of(promptLength + step) },
        cache,
      );
    }
    return {
      tokenIds,
      stopReason,
      prefillLogits,
      visualTokens: features.map((f, i) => ({ original: costs[i].tokens, atDecoder: f.state.count })),
      promptTokens: promptLength,
      steps,
      patchFates: prefill.spans.map((span, i) => this.imageFates(span, images[i])),
      cacheLengths,
      flops: prefillFlops(this.arch, visionTokens, decoderTokens, {
        images: costs,
        textTokens: inputIds.length - images.length,
      }),
      timings: { visionMs, prefillMs, decodeMs, visionCpuMs, prefillCpuMs },
    };
  }

  /** The three towers' segments for a plan's hooks, their sessions built (or kept from before). */
  private segmentsFor(hooks: Map<HookSite, ReductionHook>): Promise<[Segment[], Segment[], Segment[]]> {
    const visionSites = new Map<string, AttentionNeeds>();
    const decoderSites = new Map<string, AttentionNeeds>();
    for (const [site, hook] of hooks) {
      const stage = siteStage(site);
      if (stage !== 'packed') (stage === 'decoder' ? decoderSites : visionSites).set(site, hook.needs);
      else {
        // The packed image is no tower's: its hook gets only the cosine, computed on its own (reducePacked).
        const { hiddenCosine: _cosine, ...others } = hook.needs;
        const unmet = Object.entries(others).filter(([, wanted]) => wanted);
        if (unmet.length > 0)
          throw new Error(
            `the packed image has only its cosine to give; a hook there asked for ${unmet.map(([n]) => n)}`,
          );
      }
    }
    return Promise.all([
      this.runners.vision.segments(visionSites),
      this.runners.embed.segments(new Map()),
      this.runners.decoder.segments(decoderSites),
    ]);
  }

  /**
   * Refuses a run whose prompt leaves no room in the model's context, or whose KV cache and activations would not fit
   * the memory available (peakRunBytes in flops/model.ts: a chunk's working set for every decoder segment of the plan
   * whose arena has not yet held one for a prompt this long); returns the answer's token limit within the context.
   */
  private checkRunFits(promptTokens: number, maxNewTokens: number, decoder: readonly Segment[]): number {
    const limit = this.config.text.maxPositions;
    if (promptTokens >= limit) {
      throw new FicocoError(
        `The prompt is ${promptTokens} tokens, and this model reads at most ${limit} ` +
          `(max_position_embeddings, or a sliding_window below it, in config.json); shorten it.`,
        'input',
      );
    }
    const answerTokens = Math.min(maxNewTokens, limit - promptTokens);
    const needed = peakRunBytes(
      this.arch,
      {
        promptTokens,
        answerTokens,
        queryChunk: this.prefillChunkTokens(decoder.length, promptTokens),
        newDecoderArenas: decoder.filter((segment) => segment.arena.promptTokens < promptTokens).length,
      },
      this.factory.computeType === ElemType.float32 ? 4 : 2,
    );
    const available = this.limits.availableMemory();
    if (needed > available) {
      throw new FicocoError(
        `This question needs about ${formatGibibytes(needed)} of memory for attention and the KV cache ` +
          `(${promptTokens} prompt tokens, up to ${answerTokens} ` +
          `in the answer), and ${formatGibibytes(available)} is available; ask about fewer images or in a new ` +
          `chat, allow fewer answer tokens, or close other programs.`,
        'input',
      );
    }
    return answerTokens;
  }

  /**
   * Refuses a run whose hook at `packed` needs the cosine of an image's tokens where that matrix would not fit the memory
   * available (twice: ONNX Runtime's output and the copy handed over; and three copies of the rows), before any image is
   * encoded.
   */
  private checkPackedFits(hooks: Map<HookSite, ReductionHook>, images: readonly ImageCost[]): void {
    if (!hooks.get('packed')?.needs.hiddenCosine || images.length === 0) return;
    // Passes thinned in the tower are packed unshrunk: at most every patch of every pass and a row end per patch row.
    const side = this.config.tiling?.featuresPerSide;
    const thinned = side !== undefined && [...hooks.keys()].some((site) => siteStage(site) === 'tower');
    const tokens = Math.max(...images.map((image) => (thinned ? image.passes * (side * side + side) : image.tokens)));
    const needed = 2 * 4 * tokens ** 2 + 3 * 4 * tokens * this.config.text.hiddenSize;
    const available = this.limits.availableMemory();
    if (needed > available)
      throw new FicocoError(
        `This reduction compares every pair of an image's visual tokens (${tokens}), which needs about ` +
          `${formatGibibytes(needed)} of memory, and ${formatGibibytes(available)} is available; ask about a smaller ` +
          'image, choose another reduction method, or close other programs.',
        'input',
      );
  }

  /**
   * Runs the hook at `packed` on an image as the decoder will read it: its row ends set aside (they stay, as in the
   * decoder), the cosine of its content tokens computed here when the hook needs it.
   */
  private async reducePacked(
    image: PackedImage,
    index: number,
    hook: ReductionHook | undefined,
    steps: StepStat[],
  ): Promise<PackedImage> {
    if (!hook) return image;
    const { state, rowEnds } = image;
    // The cosine is computed for the step alone: its time is the step's.
    const clock = startClock();
    const outputs: Record<string, ort.Tensor> = {};
    if (hook.needs.hiddenCosine) {
      const content = contentTokens(rowEnds);
      // A large matrix gets a session of its own, released at once: the shared one's arena would keep its size for good.
      const large = 4 * content.length ** 2 > OWN_SESSION_BYTES;
      const products = large ? new RowProducts(this.factory) : (this.rowProducts ??= new RowProducts(this.factory));
      const cosine = await products
        .cosine(selectRows(state.hidden, state.width, content), state.width)
        .finally(() => (large ? products.release() : undefined));
      outputs[HIDDEN_COSINE] = new ort.Tensor('float32', cosine, [content.length, content.length]);
    }
    const at = hookView(hook, state, outputs, {
      steps,
      image: index,
      hasClassToken: false,
      structure: rowEnds.includes(1) ? rowEnds : undefined,
      signalsOverContent: true,
    });
    const reduced = at.finish(hook.reduce(at.view), clock());
    return { state: reduced.state, rowEnds: reduced.structure ?? new Uint8Array(reduced.state.count) };
  }

  /**
   * What reduction did to an image's patches; for a tiled image, to the cells of its grid over the whole screenshot,
   * with the tiles' borders in cells, and to its base image's patches (the thumbnail).
   */
  private imageFates(span: VisualSpan, image: ImagePixels): PatchFates {
    const fates = patchFates(span);
    const { tiling } = this.config;
    // An image seen whole (one of several on LLaVA-OneVision) has no grid but its own, over what it saw of the image.
    if (!tiling || image.values.length === this.visionPasses.passSize) {
      const input = seenRegion(image.size.width, image.size.height, this.wholeImageConfig());
      // The patches may stop short of the tower's input (SigLIP's 27 × 14 of 384 pixels): the grid covers that much.
      const { imageSize, patchSize, patchesPerSide } = this.config.vision;
      const covered = (patchesPerSide * patchSize) / imageSize;
      const seen = { ...input, width: input.width * covered, height: input.height * covered };
      const all = seen.left === 0 && seen.top === 0 && seen.width === 1 && seen.height === 1;
      return all ? fates : { ...fates, seen };
    }
    const layout = anyresLayout(tiling, image.size);
    const base = tiling.featuresPerSide ** 2;
    const cells = fates.patches.length - base;
    // Packed whole, the grid may be shrunk (anyres_max); thinned in the tower, it is the unpadded grid.
    const grid = cells === layout.grid.rows * layout.grid.cols ? layout.grid : layout.unpadded;
    const f = tiling.featuresPerSide;
    const borders = (count: number, first: number, cut: number, extent: number) =>
      Array.from({ length: count - 1 }, (_, i) => ((i + 1) * f - first) * (extent / cut)).filter(
        (at) => at > 0 && at < extent,
      );
    return {
      rows: grid.rows,
      cols: grid.cols,
      patches: fates.patches.slice(base),
      tileBorders: {
        rows: borders(layout.tiles.rows, layout.unpadded.firstRow, layout.unpadded.rows, grid.rows),
        cols: borders(layout.tiles.cols, layout.unpadded.firstCol, layout.unpadded.cols, grid.cols),
      },
      thumbnail: { rows: f, cols: f, patches: fates.patches.slice(0, base) },
    };
  }

  /**
   * Embedding rows of `ids`. In a prompt (`placeholders`) the image token marks where features go, and a harmless row
   * stands in for it; a generated image token is embedded as itself, as transformers does.
   */
  private async embed(
    ids: readonly number[],
    segment: Segment,
    { placeholders }: { placeholders: boolean },
  ): Promise<TokenState> {
    const imageToken = placeholders ? this.config.imageTokenId : undefined;
    const lookup = BigInt64Array.from(ids, (id) => BigInt(id === imageToken ? 0 : id));
    const outputs = await segment.session.run({
      [segment.graph.inputName]: new ort.Tensor('int64', lookup, [ids.length]),
    });
    const width = this.config.text.hiddenSize;
    return {
      hidden: outputs[segment.graph.outputName].data as Float32Array,
      count: ids.length,
      width,
      sizes: new Float32Array(ids.length).fill(1),
      positions: Int32Array.from({ length: ids.length }, (_, i) => i),
      spans: [],
    };
  }

  /** One pass through the decoder's segments, extending the KV cache; hooks run only at prefill. */
  private async runDecoder(
    segments: Segment[],
    state: TokenState,
    cache: KvCache,
    prefill?: {
      hooks: Map<HookSite, ReductionHook>;
      steps: StepStat[];
      layers: LayerTokens;
      spans: VisualSpan[];
      /** 1 for a structure token (a tiled image's row end), which decoder-side reduction leaves in place */
      structure: Uint8Array;
      watch: PrefillWatch;
    },
  ): Promise<Float32Array> {
    let current = state;
    const blocks = this.towers.decoder.blocks.length;
    prefill?.watch.promptAhead(current.count, blocks);
    for (const segment of segments) {
      if (prefill) countLayerTokens(this.towers.decoder, segment, current.count, prefill.layers);
      const hook = prefill && segment.site ? prefill.hooks.get(segment.site as HookSite) : undefined;
      // A hook sees no structure tokens: its signals are gathered over the content only.
      const content = hook && prefill?.structure.includes(1) ? contentTokens(prefill.structure) : undefined;
      const outputs = await this.runDecoderSegment(segment, segments.length, current, cache, {
        expose: hook?.needs,
        content,
        watch: prefill?.watch,
      });
      if (segment.end === blocks) return outputs[LOGITS].data as Float32Array;
      current = { ...current, hidden: outputs[segment.graph.outputName].data as Float32Array };
      if (hook && prefill) {
        const reduced = runHook(hook, current, outputs, {
          steps: prefill.steps,
          hasClassToken: false,
          structure: prefill.structure,
          signalsOverContent: content !== undefined,
        });
        current = reduced.state;
        prefill.watch.promptAhead(current.count, blocks - segment.end);
        prefill.spans = current.spans;
        prefill.structure = reduced.structure ?? prefill.structure;
      }
    }
    throw new Error('the decoder tower ended without producing logits');
  }

  /**
   * Runs one of a plan's `segmentCount` decoder segments over the tokens in equal chunks (equalChunkTokens), each
   * attending to the cache the chunks before it left (the causal result, in less memory). `expose`: what a hook
   * after the segment reads, gathered over the chunks and over the `content` tokens (all when absent); `watch`: a
   * prefill's, told of each chunk.
   */
  private async runDecoderSegment(
    segment: Segment,
    segmentCount: number,
    state: TokenState,
    cache: KvCache,
    { expose, content, watch }: { expose?: AttentionNeeds; content?: Int32Array; watch?: PrefillWatch } = {},
  ): Promise<ort.InferenceSession.OnnxValueMapType> {
    const { graph } = segment;
    const chunk = this.prefillChunkTokens(segmentCount, state.count);
    const gathered = expose ? new GatheredExposure(state.count, expose, content) : undefined;
    let outputs: ort.InferenceSession.OnnxValueMapType = {};
    let hidden: Float32Array | undefined;
    for (let start = 0; start < state.count; start += chunk) {
      const end = Math.min(start + chunk, state.count);
      const run = {
        tokens: end - start,
        blocks: segment.end - segment.start,
        attentionBlocks: segment.graph.cacheLayers.length,
        cached: start,
      };
      await watch?.beforeChunk(run);
      outputs = await this.runDecoderChunk(
        segment,
        state.hidden.subarray(start * state.width, end * state.width),
        state.positions.subarray(start, end),
        cache,
      );
      watch?.chunkDone(run);
      gathered?.add(outputs, start, end - start);
      if (graph.outputName === LOGITS || end - start === state.count) continue; // only the last token's logits count
      const piece = outputs[graph.outputName];
      const width = piece.dims[1];
      hidden ??= new Float32Array(state.count * width);
      hidden.set(piece.data as Float32Array, start * width);
    }
    if (hidden)
      outputs = {
        ...outputs,
        [graph.outputName]: new ort.Tensor('float32', hidden, [state.count, hidden.length / state.count]),
      };
    if (!gathered) return outputs;
    this.rowProducts ??= new RowProducts(this.factory);
    return { ...outputs, ...(await gathered.assemble(this.rowProducts, outputs[graph.outputName])) };
  }

  /** Prompt tokens one run of each of `segmentCount` decoder segments takes: what the memory check plans for. */
  private prefillChunkTokens(segmentCount: number, promptTokens: number): number {
    const most = promptChunkTokens(this.limits.prefillChunkTokens, segmentCount, this.config.text.heads, promptTokens);
    return equalChunkTokens(promptTokens, most);
  }

  /** One run of a decoder segment over `hidden` [tokens, width] at `positions`, extending the cache. */
  private async runDecoderChunk(
    segment: Segment,
    hidden: Float32Array,
    positions: ArrayLike<number>,
    cache: KvCache,
  ): Promise<ort.InferenceSession.OnnxValueMapType> {
    const count = positions.length;
    const feeds: Record<string, ort.Tensor> = {
      [segment.graph.inputName]: new ort.Tensor('float32', hidden, [count, hidden.length / count]),
      ...cache.feeds(segment.graph.cacheLayers, count),
    };
    if (segment.graph.usesPositions)
      feeds[POSITIONS] = new ort.Tensor(
        'int64',
        BigInt64Array.from(positions, (p) => BigInt(p)),
        [count],
      );
    const outputs = await segment.session.run(feeds);
    cache.update(segment.graph.cacheLayers, outputs);
    return outputs;
  }
}

/** Analytic FLOPs of an unreduced prefill of a small image (one tower pass) and a short question. */
function smallPrefillFlops(arch: ModelArch): number {
  const blank = { width: WARM_UP_IMAGE_SIDE, height: WARM_UP_IMAGE_SIDE };
  return runFlops(arch, unreducedShapeAt(arch, [imageCost(arch, blank)], 16)).total;
}

/**
 * Analytic FLOPs of one unreduced tower pass (the projector's share included), of one token through one block, and of
 * one query-key pair in one attention block.
 */
function runUnitFlops(arch: ModelArch): PrefillWatchOptions['flops'] {
  const small = imageCost(arch, { width: WARM_UP_IMAGE_SIDE, height: WARM_UP_IMAGE_SIDE });
  const { vision, projector } = runFlops(arch, unreducedShapeAt(arch, [small], 1));
  // One token is one query-key pair; a decoder layer is two blocks: its attention half and its MLP half.
  const { total, attentionScores, softmax } = llmLayerFlops(arch.llm, 1);
  const keyPair = attentionScores + softmax;
  return { pass: (vision + projector) / small.passes, tokenBlock: (total - keyPair) / 2, keyPair };
}
