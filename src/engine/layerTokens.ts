/**
 * The tokens that entered each layer half of a run, noted segment by segment as it goes (a hook between segments
 * changes them), and the analytic FLOPs (src/flops) they make against the same prompt unreduced.
 */
import { type ImageCost, type ModelArch, type RunFlops, runFlops, unreducedShapeAt } from '../flops/model';
import { visionTowerFlops } from '../flops/vision';
import type { Tower } from './graph/segment';
import type { Segment } from './runtime/towerRunner';

/** Tokens that entered each layer's attention and MLP halves (they differ where a hook sits between them). */
export interface LayerTokens {
  attention: number[];
  mlp: number[];
}

/** A vision tower pass's tokens into each layer half, and into the projector (before a step after it). */
export interface PassTokens extends LayerTokens {
  projected: number;
}

/** Notes how many tokens enter the layer halves a segment runs. */
export function countLayerTokens(tower: Tower, segment: Segment, tokens: number, into: LayerTokens): void {
  for (let b = segment.start; b < segment.end; b++) {
    const block = tower.blocks[b];
    if (block.layer !== undefined) (block.attends ? into.attention : into.mlp)[block.layer] = tokens;
  }
}

/** Analytic FLOPs of one tower pass from the tokens each of its layers saw. */
export function passFlops(arch: ModelArch, layers: LayerTokens): number {
  return visionTowerFlops(arch.vision, layers.attention, layers.mlp);
}

/** Analytic FLOPs of a prefill from the tokens each layer saw, and of the same prompt unreduced. */
export function prefillFlops(
  arch: ModelArch,
  vision: PassTokens[],
  decoder: LayerTokens,
  prompt: { images: readonly ImageCost[]; textTokens: number },
): { run: RunFlops; unreduced: RunFlops; causalLlm: number } {
  const shape = {
    vision: vision.map((layers) => layers.attention),
    visionMlp: vision.map((layers) => layers.mlp),
    projector: vision.reduce((sum, pass) => sum + pass.projected, 0),
    llm: decoder.attention,
    llmMlp: decoder.mlp,
  };
  return {
    run: runFlops(arch, shape),
    unreduced: runFlops(arch, unreducedShapeAt(arch, prompt.images, prompt.textTokens)),
    causalLlm: runFlops(arch, shape, 'causal').llm,
  };
}
