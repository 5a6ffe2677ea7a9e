import { layerAt } from '../method';

/** A decoder layer and the visual tokens a step there removes. */
export interface LayerRemoval {
  layer: number;
  remove: number;
}

/**
 * Steps at layer fractions of the decoder depth: layer = layerAt(fraction, depth) + offset (clamped to ≥ 0);
 * fractions that land on the same layer of a shallow model become one step removing their sum.
 */
export function removalsAtLayers(
  fractions: readonly number[],
  offset: number,
  textLayers: number,
  removals: readonly number[],
): LayerRemoval[] {
  const steps: LayerRemoval[] = [];
  fractions.forEach((fraction, i) => {
    const layer = Math.max(0, layerAt(fraction, textLayers) + offset);
    const previous = steps[steps.length - 1];
    if (previous && previous.layer >= layer) previous.remove += removals[i];
    else steps.push({ layer, remove: removals[i] });
  });
  return steps;
}
