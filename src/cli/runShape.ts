import type { AnyresLayout } from '../common/anyres';
import type { RunShape } from '../flops/model';
import { ModelShape } from '../reduction/method';
import { type Step, removedTokens } from '../reduction/paradigm';
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
 * The same for one tiled image (planTiledReduction). Every pass runs the per-pass steps. Passes that were thinned
 * leave the decoder what its steps expect and a row end per row of the unpadded grid — an estimate: a run keeps the
 * tokens its scores pick, drops those holding only padding and the row ends of emptied rows, and skips anyres_max's
 * shrinking. Decoder steps thin the image's content; its row ends stay.
 */
export function tiledRunShape(
  plan: TiledReductionPlan,
  pass: ModelShape,
  layout: AnyresLayout,
  textTokens: number,
): RunShape {
  const passes = layout.tiles.rows * layout.tiles.cols + 1;
  const tower = towerShape(plan.perPass, pass);
  const thinned = tower.visual < pass.visualTokens;
  // Decoder steps are sized to end at the budget, so thinned passes hand them the budget plus what they remove.
  const content = thinned ? plan.keep + removedTokens(plan.inDecoder) : layout.tokens - layout.grid.rows;
  const rowEnds = thinned ? layout.unpadded.rows : layout.grid.rows;
  return {
    vision: Array.from({ length: passes }, () => tower.attention),
    visionMlp: Array.from({ length: passes }, () => tower.mlp),
    projector: passes * tower.projected,
    ...decoderShape(plan.inDecoder, pass.textLayers, textTokens + rowEnds, 1, content),
  };
}

/** One image's tokens into each vision layer half, into the projector, and out of it, under `steps`. */
function towerShape(
  steps: readonly Step[],
  model: ModelShape,
): { attention: number[]; mlp: number[]; projected: number; visual: number } {
  const removals = removalsBySite(steps);
  let visual = model.visualTokens;
  const take = (site: string) => (visual -= Math.min(removals.get(site) ?? 0, visual - 1));
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

/** Tokens into each decoder layer half: `fixed` tokens besides `images` images of `visual` tokens, under `steps`. */
function decoderShape(
  steps: readonly Step[],
  textLayers: number,
  fixed: number,
  images: number,
  visual: number,
): { llm: number[]; llmMlp: number[] } {
  const removals = removalsBySite(steps);
  const llm: number[] = [];
  const llmMlp: number[] = [];
  for (let layer = 0; layer < textLayers; layer++) {
    llm.push(fixed + images * visual);
    visual -= Math.min(removals.get(`llm:${layer}`) ?? 0, visual - 1);
    llmMlp.push(fixed + images * visual);
  }
  return { llm, llmMlp };
}

function removalsBySite(steps: readonly Step[]): Map<string, number> {
  return new Map(steps.map((step) => [step.site as string, step.remove]));
}
