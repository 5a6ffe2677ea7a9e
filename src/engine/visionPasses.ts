/**
 * An image's way through the vision tower: each pass (one, or a tiled image's base image and tiles) runs the tower's
 * segments with the hooks between them, and the passes are packed into the one sequence of tokens the decoder reads.
 */
import * as ort from 'onnxruntime-node';
import { type Size, anyresLayout, tileCell } from '../common/anyres';
import type { ModelArch } from '../flops/model';
import { type HookSite, type ReductionHook, type TokenState, siteStage } from '../reduction/tokenState';
import type { StepStat } from './api';
import { startClock } from './clock';
import { LOG_SIZES } from './graph/segment';
import { type HookContext, hookView, runHook, tokensOn } from './hookCall';
import { type PassTokens, countLayerTokens, passFlops } from './layerTokens';
import type { ModelConfig, ModelTowers } from './models/family';
import { type PackedImage, packSquare, packTiles } from './models/tiledFeatures';
import type { PrefillWatch } from './prefillWatch';
import type { Segment } from './runtime/towerRunner';

/** One image as the vision tower takes it. */
export interface ImagePixels {
  /** [passes, 3, side, side] float32: one pass, or a tiled image's base image then its tiles */
  values: Float32Array;
  /** the image as decoded: a tiled model lays its tiles and tokens out from it */
  size: Size;
}

/** One tower pass of an image on its way through the tower's segments. */
interface TowerPass {
  state: TokenState;
  pixels: Float32Array;
  /** index of the next segment to run */
  next: number;
  /** the tile's patches that see only its padding, until the first hook that asks has dropped them */
  padding?: Uint8Array;
  /** the outputs of the segment it stopped after, for the hook there */
  outputs?: ort.InferenceSession.OnnxValueMapType;
  at: { image: number; pass: number; layers: PassTokens };
}

/** Runs a model's vision tower over images, pass by pass, with a plan's hooks. */
export class VisionPasses {
  constructor(
    private readonly config: ModelConfig,
    private readonly towers: ModelTowers,
    /** the FLOPs model's description of the model, for each pass's FLOPs */
    private readonly arch: ModelArch,
  ) {}

  /** Floats in one pass of pixel values: the vision tower input's size. */
  get passSize(): number {
    return (this.towers.vision.input.dims as number[]).reduce((product, d) => product * d, 1);
  }

  /**
   * Runs the vision tower (with its hooks) on every pass of an image (one, or a tiled image's base image and tiles);
   * returns each pass's projected features. A hook that reduces the passes together (ReductionHook.reducePasses) has
   * every pass run to its site first; then each goes on from what the hook left it.
   */
  async encodePasses(
    pixels: ImagePixels,
    image: number,
    segments: Segment[],
    hooks: Map<HookSite, ReductionHook>,
    run: { watch: PrefillWatch; steps: StepStat[]; visionTokens: PassTokens[] },
  ): Promise<TokenState[]> {
    const count = pixels.values.length / this.passSize;
    const joints = [...hooks.values()].filter((hook) => hook.reducePasses && siteStage(hook.site) === 'tower');
    if (joints.length > 1)
      throw new Error(`hooks at ${joints.map((hook) => hook.site).join(' and ')} both reduce the passes together`);
    const joint = count > 1 ? joints[0] : undefined;
    const passes: TowerPass[] = [];
    for (let pass = 0; pass < count; pass++) {
      const layers: PassTokens = { attention: [], mlp: [], projected: 0 };
      const values = pixels.values.subarray(pass * this.passSize, (pass + 1) * this.passSize);
      await run.watch.beforePass();
      const input = this.towerInput(values, { image, pass, layers }, this.paddingPatches(pixels, pass));
      passes.push(await this.runTower(input, segments, hooks, run.steps, joint?.site));
      run.watch.passDone(passFlops(this.arch, layers));
      run.visionTokens.push(layers);
    }
    if (!joint?.reducePasses) return passes.map((pass) => pass.state);
    const views = passes.map((pass) =>
      hookView(joint, pass.state, pass.outputs!, this.passHookContext(pass, joint, run.steps)),
    );
    const clock = startClock();
    const reduced = joint.reducePasses(views.map((at) => at.view));
    const { ms, cpuMs } = clock();
    const resumed: TokenState[] = [];
    for (const [p, pass] of passes.entries()) {
      await run.watch.check();
      // One ranking served every pass: its time is shared among them.
      const { state } = views[p].finish(reduced[p], { ms: ms / passes.length, cpuMs: cpuMs / passes.length });
      resumed.push((await this.runTower({ ...pass, state, padding: undefined }, segments, hooks, run.steps)).state);
    }
    return resumed;
  }

  /** A pass's first tokens: the tower's class token, where it has one, then its patches. */
  private towerInput(pixels: Float32Array, at: TowerPass['at'], padding?: Uint8Array): TowerPass {
    const { grid, classToken } = this.towers.image;
    const patches = grid.rows * grid.cols;
    // A class token, where the tower has one, comes before the patches and stands for none of them.
    const lead = classToken ? 1 : 0;
    const count = lead + patches;
    const state: TokenState = {
      hidden: new Float32Array(0),
      count,
      width: this.config.vision.hiddenSize,
      sizes: new Float32Array(count).fill(1),
      positions: Int32Array.from({ length: count }, (_, i) => i),
      spans: [
        {
          start: lead,
          count: patches,
          grid,
          patchOwner: Int32Array.from({ length: patches }, (_, i) => i + lead),
          tokenPatch: Int32Array.from({ length: patches }, (_, i) => i),
        },
      ],
    };
    return { state, pixels, next: 0, padding, at };
  }

  /** What a hook at a tower site is told about the pass it reduces. */
  private passHookContext(pass: TowerPass, hook: ReductionHook, steps: StepStat[]): HookContext {
    const { at, padding, state } = pass;
    return {
      steps,
      image: at.image,
      pass: at.pass,
      // The projector's output has no class token left.
      hasClassToken: this.towers.image.classToken && hook.site !== 'projector',
      drop: padding && hook.needs.imageOnly ? tokensOn(state, padding) : undefined,
    };
  }

  /**
   * Runs a pass through the tower's segments from `pass.next`, each hook on what its segment left; stops, before its
   * hook, at `until`'s site, with that segment's outputs. A tile's `padding` patches go before its first hook when the
   * hook asks (AttentionNeeds.imageOnly): unpadding would cut them.
   */
  private async runTower(
    pass: TowerPass,
    segments: Segment[],
    hooks: Map<HookSite, ReductionHook>,
    steps: StepStat[],
    until?: HookSite,
  ): Promise<TowerPass> {
    let { state, padding } = pass;
    const { layers } = pass.at;
    const pixelDims = this.towers.vision.input.dims as number[];
    for (const [index, segment] of segments.entries()) {
      if (index < pass.next) continue;
      const input =
        segment.start === 0
          ? new ort.Tensor('float32', pass.pixels, pixelDims)
          : new ort.Tensor('float32', state.hidden, [state.count, state.width]);
      countLayerTokens(this.towers.vision, segment, state.count, layers);
      const feeds: Record<string, ort.Tensor> = { [segment.graph.inputName]: input };
      if (segment.graph.usesLogSizes)
        feeds[LOG_SIZES] = new ort.Tensor('float32', state.sizes.map(Math.log), [state.count]);
      const outputs = await segment.session.run(feeds);
      const hidden = outputs[segment.graph.outputName].data as Float32Array;
      const atEnd = segment.end === this.towers.vision.blocks.length;
      state = atEnd ? this.featuresFrom(state, hidden) : { ...state, hidden };
      // The projector is the tower's last block and maps token by token: as many came out of it as went in.
      if (atEnd) layers.projected = state.count;
      const site = atEnd ? 'projector' : (segment.site as HookSite);
      const hook = hooks.get(site);
      if (!hook) continue;
      const here = { ...pass, state, padding, next: index + 1, outputs };
      if (site === until) return here;
      state = runHook(hook, state, outputs, this.passHookContext(here, hook, steps)).state;
      padding = undefined;
    }
    return { ...pass, state, padding, next: segments.length };
  }

  /** Per patch of pass `pass` of a tiled image, 1 where it sees only the tile's padding; none for a one-pass image. */
  private paddingPatches(pixels: ImagePixels, pass: number): Uint8Array | undefined {
    const { tiling } = this.config;
    if (!tiling || pass === 0 || pixels.values.length === this.passSize) return undefined;
    const layout = anyresLayout(tiling, pixels.size);
    const f = tiling.featuresPerSide;
    return Uint8Array.from({ length: f * f }, (_, patch) => (tileCell(layout, f, pass - 1, patch) < 0 ? 1 : 0));
  }

  /**
   * The tower's output tokens, widths now the decoder's: the tokens before the patches are gone unless the family keeps
   * them.
   */
  private featuresFrom(state: TokenState, hidden: Float32Array): TokenState {
    const width = this.config.text.hiddenSize;
    const count = hidden.length / width;
    const dropped = state.count - count;
    const span = state.spans[0];
    const keptLead = span.start - dropped;
    return {
      hidden,
      count,
      width,
      sizes: state.sizes.slice(dropped),
      positions: Int32Array.from({ length: count }, (_, i) => i),
      spans: [
        {
          start: 0,
          count,
          grid: span.grid,
          patchOwner: span.patchOwner.map((owner) => (owner < 0 ? -1 : owner - dropped)),
          // A kept class token joins the image's tokens without a patch of its own.
          tokenPatch: Int32Array.of(...new Array<number>(keptLead).fill(-1), ...span.tokenPatch),
        },
      ],
    };
  }

  /** An image's passes as the one sequence of tokens the decoder reads (a tiled model's: tiledFeatures.ts). */
  packImage(passes: TokenState[], size: Size): PackedImage {
    const { tiling } = this.config;
    const { rowEnd } = this.towers.image;
    if (!tiling || !rowEnd) return { state: passes[0], rowEnds: new Uint8Array(passes[0].count) };
    if (passes.length === 1) return packSquare(passes[0], rowEnd);
    return packTiles(passes, anyresLayout(tiling, size), tiling.featuresPerSide, rowEnd);
  }
}
