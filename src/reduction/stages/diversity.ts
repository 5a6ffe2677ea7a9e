import { norm, row } from '../arrays';

/**
 * Greedy max–min diversity on d(i, j) = 1 − cos(x_i, x_j) (DivPrune): the seed is the vector whose nearest
 * neighbour is farthest, argmax_i min_{j≠i} d(i, j); then repeatedly add argmax_{i∉S} min_{s∈S} d(i, s),
 * ties to the earlier vector, until `keep` are chosen. Returns row indices in the order they were chosen.
 */
export function maxMinDiverse(vectors: Float32Array, width: number, keep: number): number[] {
  const distance = cosineDistances(vectors, width);
  const count = vectors.length / width;
  const nearestNeighbour = new Float64Array(count).fill(Infinity);
  for (let i = 0; i < count; i++) for (let j = 0; j < count; j++) if (j !== i) nearestNeighbour[i] = Math.min(nearestNeighbour[i], distance[i * count + j]);
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
    for (let i = 0; i < count; i++) distanceToChosen[i] = Math.min(distanceToChosen[i], distance[next * count + i]);
  }
  return chosen;
}

/** D_ij = 1 − x_i·x_j / (‖x_i‖‖x_j‖) for the rows of a [count, width] matrix ([count, count], symmetric). */
function cosineDistances(vectors: Float32Array, width: number): Float64Array {
  const count = vectors.length / width;
  const unit = new Float64Array(vectors.length);
  for (let i = 0; i < count; i++) {
    const length = Math.max(norm(row(vectors, width, i)), 1e-12);
    for (let d = 0; d < width; d++) unit[i * width + d] = vectors[i * width + d] / length;
  }
  const distance = new Float64Array(count * count);
  for (let i = 0; i < count; i++) {
    for (let j = i + 1; j < count; j++) {
      distance[i * count + j] = distance[j * count + i] = 1 - rowDot(unit, i * width, j * width, width);
    }
  }
  return distance;
}

/** Σ_d u[a + d]·u[b + d], four partial sums so the loop pipelines (this pairwise pass dominates DivPrune's cost). */
function rowDot(u: Float64Array, a: number, b: number, width: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let d = 0;
  for (; d + 3 < width; d += 4) {
    s0 += u[a + d] * u[b + d];
    s1 += u[a + d + 1] * u[b + d + 1];
    s2 += u[a + d + 2] * u[b + d + 2];
    s3 += u[a + d + 3] * u[b + d + 3];
  }
  for (; d < width; d++) s0 += u[a + d] * u[b + d];
  return s0 + s1 + s2 + s3;
}
