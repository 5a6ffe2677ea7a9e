import type { AnyresLayout } from '../common/anyres';
import type { RunShape } from '../flops/model';
import { ModelShape } from '../reduction/method';
import { type Step, stepRemoval } from '../reduction/paradigm';
import { ReductionPlan } from '../reduction/registry';
import type { TiledReductionPlan } from '../reduction/tiled';

/**
 * Tokens entering each layer half when a plan runs on `images` images and `textTokens` prompt tokens (its schedule,
 * before any run).
 */
export function planRunShape(
  plan: ReductionPlan,
  model: ModelShape,
  prompt: { images: number; textTokens: number },
): RunShape {
  const tower = towerShape(plan.steps, model);
  const perImage = <T>(value: T) => Array.from({ length: prompt.images }, () => value);
  return {
    vision: perImage(tower.attention),
    visionMlp: perImage(tower.mlp),
    projector: prompt.images * tower.projected,
    ...decoderShape(plan.steps, model.textLayers, prompt.textTokens, prompt.images, tower.visual),
  };
}

/**
 * The same for one tiled image (planTiledReduction). Every pass runs the per-pass steps, on its tokens on the image
 * once its first step dropped the padding's. Passes that were thinned hand the decoder every token they kept and a
 * row end per row of the unpadded grid — an estimate: a run drops the row ends of emptied rows and skips anyres_max's
 * shrinking. Steps on the packed image (before and in the decoder) thin its content; its row ends stay.
 */
export function tiledRunShape(
  plan: TiledReductionPlan,
  pass: ModelShape,
  layout: AnyresLayout,
  textTokens: number,
): RunShape {
  const towers = plan.passTokens.map((onImage, index) => towerShape(plan.perPass, pass, { onImage, index }));
  const thinned = plan.perPass.length > 0;
  const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
  const content = thinned ? sum(towers.map((tower) => tower.visual)) : layout.tokens - layout.grid.rows;
  const rowEnds = thinned ? layout.unpadded.rows : layout.grid.rows;
  return {
    vision: towers.map((tower) => tower.attention),
    visionMlp: towers.map((tower) => tower.mlp),
    projector: sum(towers.map((tower) => tower.projected)),
    ...decoderShape(plan.onPacked, pass.textLayers, textTokens + rowEnds, 1, content),
  };
}

/**
 * One image's tokens into each vision layer half, into the projector, and out of it, under `steps`; on a tiled image's
 * pass `index`, its first step sees `onImage` of the tower's tokens (a tile's padding dropped before it).
 */
function towerShape(
  steps: readonly Step[],
  model: ModelShape,
  pass?: { onImage: number; index: number },
): { attention: number[]; mlp: number[]; projected: number; visual: number } {
  const bySite = stepsBySite(steps);
  let visual = model.visualTokens;
  let first = true;
  const take = (site: string) => {
    const step = bySite.get(site);
    if (!step) return;
    if (first && pass) visual = pass.onImage;
    first = false;
    visual -= stepRemoval(step, visual, pass?.index);
  };
  const classTokens = model.hasClassToken ? 1 : 0;
  const attention: number[] = [];
  const mlp: number[] = [];
  for (let layer = 0; layer < model.visionLayers; layer++) {
    attention.push(classTokens + visual);
    take(`vision:${layer}`);
    mlp.push(classTokens + visual);
  }
  take('features');
  const projected = visual;
  take('projector');
  return { attention, mlp, projected, visual };
}

/**
 * Tokens into each decoder layer half: `fixed` tokens besides `images` images of `visual` tokens, under `steps` (a step
 * on the packed image comes first).
 */
function decoderShape(
  steps: readonly Step[],
  textLayers: number,
  fixed: number,
  images: number,
  visual: number,
): { llm: number[]; llmMlp: number[] } {
  const bySite = stepsBySite(steps);
  const packed = bySite.get('packed');
  if (packed) visual -= stepRemoval(packed, visual);
  const llm: number[] = [];
  const llmMlp: number[] = [];
  for (let layer = 0; layer < textLayers; layer++) {
    llm.push(fixed + images * visual);
    const step = bySite.get(`llm:${layer}`);
    if (step) visual -= stepRemoval(step, visual);
    llmMlp.push(fixed + images * visual);
  }
  return { llm, llmMlp };
}

function stepsBySite(steps: readonly Step[]): Map<string, Step> {
  return new Map(steps.map((step) => [step.site as string, step]));
}
