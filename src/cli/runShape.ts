import type { RunShape } from '../flops/model';
import { ModelShape } from '../reduction/method';
import { ReductionPlan } from '../reduction/registry';

/**
 * Tokens entering each layer half when a plan runs on `images` images and `textTokens` prompt tokens (its schedule,
 * before any run).
 */
export function planRunShape(
  plan: ReductionPlan,
  model: ModelShape,
  prompt: { images: number; textTokens: number },
): RunShape {
  const removals = new Map(plan.steps.map((step) => [step.site as string, step.remove]));
  let visual = model.visualTokens;
  const take = (site: string) => {
    const removed = Math.min(removals.get(site) ?? 0, visual - 1);
    visual -= removed;
  };
  const classTokens = model.hasClassToken ? 1 : 0;
  const vision = { attention: [] as number[], mlp: [] as number[] };
  for (let layer = 0; layer < model.visionLayers; layer++) {
    vision.attention.push(classTokens + visual);
    take(`vision:${layer}`);
    vision.mlp.push(classTokens + visual);
  }
  take('features');
  const projector = prompt.images * visual;
  take('projector');
  const llm = { attention: [] as number[], mlp: [] as number[] };
  for (let layer = 0; layer < model.textLayers; layer++) {
    llm.attention.push(prompt.textTokens + prompt.images * visual);
    take(`llm:${layer}`);
    llm.mlp.push(prompt.textTokens + prompt.images * visual);
  }
  const perImage = <T>(value: T) => Array.from({ length: prompt.images }, () => value);
  return {
    vision: perImage(vision.attention),
    visionMlp: perImage(vision.mlp),
    projector,
    llm: llm.attention,
    llmMlp: llm.mlp,
  };
}
