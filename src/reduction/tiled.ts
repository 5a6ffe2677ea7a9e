import { type AnyresLayout, type Size, tilePatchesOnImage } from '../common/anyres';
import type { Budget } from '../common/budget';
import { type ModelShape, ReductionSettingsError, inProportion, keptTokens } from './method';
import { type Step, removedTokens, stepRemoval } from './paradigm';
import { BudgetAboveTokensError, imageOfSize, planReduction } from './registry';
import { siteStage } from './tokenState';

/** One tiled image's reduction: what its budget keeps, and the steps of every tower pass and of the packed image. */
export interface TiledReductionPlan {
  /** the image's content tokens kept (its row ends are structure and come on top) */
  keep: number;
  /**
   * per pass (the base image, then the tiles row-major), the visual tokens its first tower step sees: the patches
   * that see the image; the padding's go first, as unpadding would cut them
   */
  passTokens: number[];
  /**
   * steps up to the projector, run on every pass, each leaving every pass its planned count (Step.passLeaves), or, a
   * ranked step (Step.rank), what the passes' tokens ranked together give it of their sum
   */
  perPass: Step[];
  /** steps on the packed image without its row ends: before the decoder (site `packed`), then in it */
  onPacked: Step[];
}

/**
 * Spreads a budget over a tiled image. Tower steps see only the patches on the image (a tile's padding is dropped
 * before its first step) and keep the same share of every pass (a ranked step: the same sum), so the budget goes in
 * proportion to each pass's tokens on the image and the passes hand over exactly the budget, or, where decoder steps
 * follow (FiCoCo-VL), exactly what those are planned to start from — unless that is no fewer than the unreduced image
 * brings, when the decoder steps do it all. Steps on the packed image (DivPrune before the decoder, then the decoder's)
 * see the base image and the tiles as one span, planned from what the tower hands them and ending at the budget.
 */
export function planTiledReduction(
  request: { method: string; budget: Budget; params?: Readonly<Record<string, unknown>> },
  pass: ModelShape,
  image: { size: Size; layout: AnyresLayout },
): TiledReductionPlan {
  const { layout, size } = image;
  const content = layout.tokens - layout.grid.rows;
  if ('tokens' in request.budget && request.budget.tokens > content)
    throw new BudgetAboveTokensError(request.budget.tokens, content, imageOfSize(size));
  const passTokens = [pass.visualTokens, ...tilePatchesOnImage(layout, pass.grid.rows)];
  // Only a config.json no released model has gets here (one row of many tiles, shrunk to nothing).
  if (content < 1 || passTokens.some((tokens) => tokens < 1))
    throw new ReductionSettingsError(
      `This model's tiling gives ${imageOfSize(size)} a tile or a grid without any of its pixels ` +
        `(its config.json's image_grid_pinpoints and vision_aspect_ratio are not a released model's), so its tokens ` +
        'cannot be reduced; choose method "none".',
    );
  const keep = keptTokens(request.budget, content);
  const imageFeatures = passTokens.reduce((sum, tokens) => sum + tokens, 0);
  // A budget short of the passes' tokens by under half a token a pass still plans a step that removes some.
  const passKeep = Math.min(
    keep < imageFeatures ? pass.visualTokens - 1 : pass.visualTokens,
    Math.max(1, Math.round((keep * pass.visualTokens) / imageFeatures)),
  );
  let towerSteps = planReduction(request.method, { tokens: passKeep }, pass, request.params).steps.filter(
    (step) => siteStage(step.site) === 'tower',
  );
  // Steps on the packed image start from what reaches it: passes thinned in the tower are packed without anyres_max's
  // shrinking.
  const packedSteps = (handed: number) => {
    const packed = { ...pass, visualTokens: handed, grid: { rows: 1, cols: handed } };
    return planReduction(request.method, { tokens: keep }, packed, request.params).steps.filter(
      (step) => siteStage(step.site) !== 'tower',
    );
  };
  let onPacked = packedSteps(towerSteps.length > 0 ? imageFeatures : content);
  // The tower's passes hand over, in all, what the packed image's steps are planned to start from (the budget without
  // them)...
  let towerKeep = keep + removedTokens(onPacked);
  // ...unless that is no fewer than the image brings unreduced (shrunk): then those steps do it all, each
  // removing its planned share of the whole reduction.
  if (towerSteps.length > 0 && towerKeep >= content) {
    towerSteps = [];
    const removals = inProportion(
      content - keep,
      onPacked.map((step) => step.remove),
    );
    onPacked = onPacked.map((step, i) => ({ ...step, remove: removals[i] }));
    towerKeep = content;
  }
  const perPass = leavingEachPassItsShare(towerSteps, pass.visualTokens, passTokens, towerKeep);
  return { keep, passTokens, perPass, onPacked: leavingPlannedCounts(onPacked, keep) };
}

/** Per pass, the visual tokens a plan's tower steps leave it (as runStep removes them); only where it has some. */
export function keptPerPass(plan: TiledReductionPlan): number[] {
  return plan.passTokens.map((tokens, pass) =>
    plan.perPass.reduce((left, step) => left - stepRemoval(step, left, pass), tokens),
  );
}

/**
 * Tower steps planned for a whole pass of `tokens`, each seeing only the patches on the image and leaving every pass
 * (of `passTokens` such patches) the share of them it leaves a whole pass, rounded; the last leaves `keep` in all
 * (the budget, or what decoder steps then take to it), apportioned (rounding each pass's share alone misses by up to
 * half a token per pass).
 */
function leavingEachPassItsShare(
  steps: readonly Step[],
  tokens: number,
  passTokens: readonly number[],
  keep: number,
): Step[] {
  const last = apportion(keep, passTokens);
  let left = tokens;
  return steps.map((step, i) => {
    left -= step.remove;
    const passLeaves =
      i === steps.length - 1 ? last : passTokens.map((on, p) => Math.max(last[p], Math.round((on * left) / tokens)));
    return { ...step, needs: { ...step.needs, imageOnly: true }, passLeaves };
  });
}

/**
 * `total` tokens over passes of `passTokens`, in whole numbers that add up to it: every pass one (a step always leaves
 * one), the rest in proportion to the tokens beyond it.
 */
function apportion(total: number, passTokens: readonly number[]): number[] {
  const first = passTokens.map((tokens) => Math.min(1, tokens));
  const beyond = passTokens.map((tokens, p) => tokens - first[p]);
  const rest = Math.max(0, total - first.reduce((a, b) => a + b, 0));
  return inProportion(rest, beyond).map((part, p) => first[p] + part);
}

/**
 * Packed-image steps that leave the counts planned for them, so the image ends at its budget however many tokens the passes
 * hand over.
 */
function leavingPlannedCounts(steps: readonly Step[], keep: number): Step[] {
  let after = keep + removedTokens(steps);
  return steps.map((step) => ({ ...step, leaves: (after -= step.remove) }));
}
