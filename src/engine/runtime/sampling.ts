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

/** Index of the largest logit; ties go to the smaller index. */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** A seeded sampler: greedy at temperature 0, otherwise softmax(logits / T) restricted to the top-p nucleus. */
export function createSampler(options: SamplingOptions): (logits: Float32Array) => number {
  if (options.temperature <= 0) return argmax;
  const random = seededRandom(options.seed);
  return (logits) => sampleTopP(logits, options.temperature, options.topP, random());
}

/**
 * p_i = exp((l_i − max)/T) / Σ, tokens sorted by p, cut once the cumulative sum reaches topP, then drawn with `u` ∈ [0,
 * 1).
 */
export function sampleTopP(logits: Float32Array, temperature: number, topP: number, u: number): number {
  const max = logits[argmax(logits)];
  const weights = Float64Array.from(logits, (l) => Math.exp((l - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  const order = Array.from(weights.keys()).sort((a, b) => weights[b] - weights[a] || a - b);
  const nucleus: number[] = [];
  let mass = 0;
  for (const token of order) {
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
