import { dot, l2Normalize, row } from '../arrays';

/**
 * Greedy max–min diversity on d(i, j) = 1 − cos(x_i, x_j) (DivPrune): the seed is the vector whose nearest
 * neighbour is farthest, argmax_i min_{j≠i} d(i, j); then repeatedly add argmax_{i∉S} min_{s∈S} d(i, s),
 * ties to the earlier vector, until `keep` are chosen. Returns row indices in the order they were chosen.
 */
export function maxMinDiverse(vectors: Float32Array, width: number, keep: number): number[] {
  const count = vectors.length / width;
  const unit = Array.from({ length: count }, (_, i) => l2Normalize(Float64Array.from(row(vectors, width, i))));
  const nearestNeighbour = new Float64Array(count).fill(Infinity);
  for (let i = 0; i < count; i++) {
    for (let j = i + 1; j < count; j++) {
      const distance = 1 - dot(unit[i], unit[j]);
      nearestNeighbour[i] = Math.min(nearestNeighbour[i], distance);
      nearestNeighbour[j] = Math.min(nearestNeighbour[j], distance);
    }
  }
  const chosen: number[] = [];
  const selected = new Uint8Array(count);
  // Before the seed, every vector's distance to the chosen set is its nearest-neighbour distance.
  const distanceToChosen = nearestNeighbour;
  while (chosen.length < Math.min(keep, count)) {
    let next = -1;
    for (let i = 0; i < count; i++) if (!selected[i] && (next < 0 || distanceToChosen[i] > distanceToChosen[next])) next = i;
    if (chosen.length === 0) distanceToChosen.fill(Infinity);
    chosen.push(next);
    selected[next] = 1;
    for (let i = 0; i < count; i++) distanceToChosen[i] = Math.min(distanceToChosen[i], 1 - dot(unit[i], unit[next]));
  }
  return chosen;
}
