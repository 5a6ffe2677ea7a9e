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
  const { weights, total } = softmaxWeights(logits, max, temperature);
  const candidates = nucleus(byWeight(weights), weights, total, topP);
  // Bounds on the sum drawn from, before every candidate is ranked (see draw): the nucleus holds at least topP of the
  // total, at most all of it; slack (8n·2⁻⁵³) covers the sums' and shares' rounding (≤ 3n·2⁻⁵³).
  const slack = 4 * weights.length * Number.EPSILON;
  return draw(candidates, weights, u, { low: (topP - slack) * total, high: total * (1 + slack) });
}

/** w_i = exp((l_i − max) / T), 0 for a NaN logit; total = Σ w_i in index order. */
function softmaxWeights(logits: Float32Array, max: number, temperature: number) {
  const weights = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    weights[i] = Number.isNaN(logits[i]) ? 0 : Math.exp((logits[i] - max) / temperature);
    total += weights[i];
  }
  return { weights, total };
}

/** Which 32-bit half of a float64 holds its sign and exponent on this machine (the second on little-endian ones). */
const HIGH_WORD = new Uint32Array(Float64Array.of(1).buffer)[1] === 0x3ff00000 ? 1 : 0;
/** A weight's top 16 bits (exponent and 4 mantissa bits): for w ≥ 0, larger bits, larger w. */
const bucketOf = (words: Uint32Array, token: number) => words[2 * token + HIGH_WORD] >>> 16;
/** The bucket of the largest weight there is, exp(0) = 1. */
const TOP_BUCKET = bucketOf(new Uint32Array(Float64Array.of(1).buffer), 0);

/**
 * Tokens by weight, largest first, ties by index. Sorting the whole vocabulary took 125 ms a token at 151,936, so they
 * are counting-sorted into buckets by their weight's top bits, and a bucket is sorted only when the walk reaches it:
 * most draws end in the first few.
 */
function* byWeight(weights: Float64Array): Generator<number> {
  const words = new Uint32Array(weights.buffer, weights.byteOffset, weights.length * 2);
  // slot 0 holds the largest weights; starts[s] is where slot s begins in `ranked`, starts[s + 1] where it ends
  const slotOf = (token: number) => TOP_BUCKET - bucketOf(words, token);
  const starts = new Int32Array(TOP_BUCKET + 2);
  for (let token = 0; token < weights.length; token++) starts[slotOf(token) + 1]++;
  for (let s = 1; s < starts.length; s++) starts[s] += starts[s - 1];
  const ranked = new Int32Array(weights.length);
  const next = starts.slice();
  for (let token = 0; token < weights.length; token++) ranked[next[slotOf(token)]++] = token;
  for (let s = 0; s <= TOP_BUCKET; s++) {
    if (starts[s] === starts[s + 1]) continue;
    const bucket = ranked.subarray(starts[s], starts[s + 1]);
    bucket.sort((a, b) => weights[b] - weights[a] || a - b);
    yield* bucket;
  }
}

/** Top-p: tokens by weight until Σ w_i / total reaches topP, the one that reaches it included; none of weight 0. */
function* nucleus(ranked: Iterable<number>, weights: Float64Array, total: number, topP: number): Generator<number> {
  let mass = 0;
  for (const token of ranked) {
    // The rest have no probability (a NaN, or an exponential that underflowed): none may be drawn.
    if (weights[token] === 0) return;
    yield token;
    mass += weights[token] / total;
    if (mass >= topP) return;
  }
}

/**
 * Inverse CDF: the first candidate where u·S − w_1 − … − w_j < 0, S = Σ w_j in their order (the last candidate where
 * rounding leaves none). S needs every candidate ranked, so the walk first runs from both ends of the bounds on S:
 * a remainder only grows with its start, so where both stop at one token, S's walk stops there too.
 */
function draw(
  candidates: Iterable<number>,
  weights: Float64Array,
  u: number,
  sumBounds: { low: number; high: number },
): number {
  const walked: number[] = [];
  let sum = 0;
  let [low, high] = [u * sumBounds.low, u * sumBounds.high];
  let [lowStop, highStop] = [-1, -1];
  for (const token of candidates) {
    walked.push(token);
    sum += weights[token];
    if (lowStop < 0 && (low -= weights[token]) < 0) lowStop = token;
    if (highStop < 0 && (high -= weights[token]) < 0) highStop = token;
    if (highStop >= 0 && highStop === lowStop) return highStop;
  }
  let target = u * sum;
  for (const token of walked) {
    target -= weights[token];
    if (target < 0) return token;
  }
  return walked[walked.length - 1];
}
