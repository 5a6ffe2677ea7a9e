import { dot, l2Normalize, row } from '../arrays';
import { Correlation, correlationFrom } from '../paradigm';
import { SiteView } from '../tokenState';

/** Similarity of two tokens by sequence index. */
export type SimilarityOf = (i: number, j: number) => number;

/** cos(k̄_i, k̄_j) of the site's head-averaged keys (keys normalised once). */
export function keyCosine(view: SiteView): SimilarityOf {
  const keys = view.meanKeys;
  if (!keys) throw new Error(`keys are not available at ${view.site}; the step must ask for them`);
  const headDim = keys.length / view.keyCount;
  const unitKeys = Array.from({ length: view.keyCount }, (_, t) => l2Normalize(Float64Array.from(row(keys, headDim, t))));
  return (i, j) => dot(unitKeys[i], unitKeys[j]);
}

/** The candidate most similar to `token`, ties to the earlier candidate. */
export function mostSimilar(token: number, candidates: ArrayLike<number>, similarity: SimilarityOf): number {
  let best = candidates[0];
  let bestSimilarity = similarity(token, best);
  for (let c = 1; c < candidates.length; c++) {
    const candidateSimilarity = similarity(token, candidates[c]);
    if (candidateSimilarity > bestSimilarity) [best, bestSimilarity] = [candidates[c], candidateSimilarity];
  }
  return best;
}

/** K = 1: every source sends weight 1 to its most similar candidate (VisionZip's contextual assignment). */
export function mostSimilarReceiver(sources: ArrayLike<number>, candidates: ArrayLike<number>, similarity: SimilarityOf): Correlation {
  return correlationFrom(Array.from(sources, (source) => ({ receivers: [mostSimilar(source, candidates, similarity)], weights: [1] })));
}
