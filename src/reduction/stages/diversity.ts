/**
 * Greedy max–min diversity on d(i, j) = 1 − cos(x_i, x_j) (DivPrune), over the tokens `span` of a sequence whose
 * pairwise cosines are the row-major [stride, stride] matrix `cosine`: the seed is the token whose nearest neighbour
 * is farthest, argmax_i min_{j≠i} d(i, j); then repeatedly add argmax_{i∉S} min_{s∈S} d(i, s), ties to the earlier
 * token, until `keep` are chosen. Returns span offsets in the order they were chosen.
 */
export function maxMinDiverse(
  cosine: Float32Array,
  stride: number,
  span: { start: number; count: number },
  keep: number,
): number[] {
  const { start, count } = span;
  // Before the seed, every token's distance to the chosen set is its nearest-neighbour distance 1 − max_{j≠i} cos_ij.
  const distanceToChosen = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const base = (start + i) * stride + start;
    let closest = -Infinity;
    for (let j = 0; j < count; j++) if (j !== i && cosine[base + j] > closest) closest = cosine[base + j];
    distanceToChosen[i] = 1 - closest;
  }
  const chosen: number[] = [];
  const selected = new Uint8Array(count);
  while (chosen.length < Math.min(keep, count)) {
    let next = -1;
    for (let i = 0; i < count; i++)
      if (!selected[i] && (next < 0 || distanceToChosen[i] > distanceToChosen[next])) next = i;
    if (chosen.length === 0) distanceToChosen.fill(Infinity);
    chosen.push(next);
    selected[next] = 1;
    const base = (start + next) * stride + start;
    for (let i = 0; i < count; i++) distanceToChosen[i] = Math.min(distanceToChosen[i], 1 - cosine[base + i]);
  }
  return chosen;
}
