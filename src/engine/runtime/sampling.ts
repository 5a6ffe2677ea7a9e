import { seededRandom } from '../../common/random';

/** How the next token is chosen from the logits. */
export interface SamplingOptions {
  /** 0 = greedy (argmax) */
  temperature: number;
  /** nucleus sampling: keep the smallest set of tokens whose probability reaches topP */
  topP: number;
  /** seed of the sampler's random numbers, for reproducible answers */
  seed: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topP: 1, seed: 0 };

/**
 * Index of the largest logit; ties go to the smaller index. A NaN logit (a float16 run that overflowed) is never the
 * largest, not even first; where all are NaN, 0.
 */
export function argmax(logits: Float32Array): number {
  let best = -1;
  for (let i = 0; i < logits.length; i++)
    if (!Number.isNaN(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
  return Math.max(best, 0);
}

/** A seeded sampler: greedy at temperature 0, otherwise softmax(logits / T) restricted to the top-p nucleus. */
export function createSampler(options: SamplingOptions): (logits: Float32Array) => number {
  if (options.temperature <= 0) return argmax;
  const random = seededRandom(options.seed);
  return (logits) => sampleTopP(logits, options.temperature, options.topP, random());
}

/**
 * p_i = exp((l_i − max)/T) / Σ, tokens sorted by p, cut once the cumulative sum reaches topP, then drawn with `u` ∈ [0,
 * 1). A NaN logit has p = 0; +∞ logits share all the probability, evenly; with no finite or +∞ logit, argmax's choice.
 * (A single NaN or ∞ made every p NaN, and the draw fell on the least probable token.)
 */
export function sampleTopP(logits: Float32Array, temperature: number, topP: number, u: number): number {
  const best = argmax(logits);
  const max = logits[best];
  if (max === Infinity) {
    const infinite = Array.from(logits.keys()).filter((token) => logits[token] === Infinity);
    return infinite[Math.min(infinite.length - 1, Math.floor(u * infinite.length))];
  }
  if (!Number.isFinite(max)) return best;
  const weights = Float64Array.from(logits, (l) => (Number.isNaN(l) ? 0 : Math.exp((l - max) / temperature)));
  const total = weights.reduce((a, b) => a + b, 0);
  const order = Array.from(weights.keys()).sort((a, b) => weights[b] - weights[a] || a - b);
  const nucleus: number[] = [];
  let mass = 0;
  for (const token of order) {
    // The rest have no probability (a NaN, or an exponential that underflowed): none may be drawn.
    if (weights[token] === 0) break;
    nucleus.push(token);
    mass += weights[token] / total;
    if (mass >= topP) break;
  }
  let target = u * nucleus.reduce((sum, token) => sum + weights[token], 0);
  for (const token of nucleus) {
    target -= weights[token];
    if (target < 0) return token;
  }
  return nucleus[nucleus.length - 1];
}
