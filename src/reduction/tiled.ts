import type { AnyresLayout, Size } from '../common/anyres';
import type { Budget } from '../common/budget';
import { type ModelShape, keptTokens } from './method';
import { type Step, removedTokens } from './paradigm';
import { ReductionSettingsError, planReduction } from './registry';

/** One tiled image's reduction: what its budget keeps, and the steps of every tower pass and of the decoder. */
export interface TiledReductionPlan {
  /** the image's content tokens kept (its row ends are structure and come on top) */
  keep: number;
  /** steps up to the projector, run on every pass (base image and tiles) */
  perPass: Step[];
  /** steps in the decoder, over the packed image without its row ends */
  inDecoder: Step[];
}

/**
 * Spreads a budget over a tiled image. Every pass keeps the same share of its tokens (each has f², so the budget goes
 * in proportion to tile tokens), sized so that the passes' tokens on the image — not on its padding, which unpadding
 * cuts — come to the budget. Decoder steps rank the base image and the tiles together, as one span, planned from
 * what the tower hands them and ending at the budget.
 */
export function planTiledReduction(
  request: { method: string; budget: Budget; params?: Readonly<Record<string, unknown>> },
  pass: ModelShape,
  image: { size: Size; layout: AnyresLayout },
): TiledReductionPlan {
  const { layout, size } = image;
  const content = layout.tokens - layout.grid.rows;
  if ('tokens' in request.budget && request.budget.tokens > content)
    throw new ReductionSettingsError(
      `A budget of ${request.budget.tokens} visual tokens is more than the ${content} this model gives a ` +
        `${size.width} × ${size.height} image, so nothing would be reduced; keep at most ${content}, or turn reduction off.`,
    );
  const keep = keptTokens(request.budget, content);
  const imageFeatures = pass.visualTokens + layout.unpadded.rows * layout.unpadded.cols;
  const passKeep = Math.max(1, Math.round((keep * pass.visualTokens) / imageFeatures));
  const perPass = planReduction(request.method, { tokens: passKeep }, pass, request.params).steps.filter(
    (step) => !step.site.startsWith('llm:'),
  );
  // Decoder steps start from what reaches them: passes thinned in the tower are packed without anyres_max's shrinking.
  const handed = perPass.length > 0 ? imageFeatures : content;
  const packed = { ...pass, visualTokens: handed, grid: { rows: 1, cols: handed } };
  const inDecoder = planReduction(request.method, { tokens: keep }, packed, request.params).steps.filter((step) =>
    step.site.startsWith('llm:'),
  );
  return { keep, perPass, inDecoder: leavingPlannedCounts(inDecoder, keep) };
}

/**
 * Decoder steps that leave the counts planned for them, so the image ends at its budget however many tokens the passes
 * hand over (redundancy-driven tower steps drop padding first, which unpadding would have cut anyway).
 */
function leavingPlannedCounts(steps: readonly Step[], keep: number): Step[] {
  let after = keep + removedTokens(steps);
  return steps.map((step) => ({ ...step, leaves: (after -= step.remove) }));
}
