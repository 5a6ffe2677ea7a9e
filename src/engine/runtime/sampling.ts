import { seededRandom } from '../../common/random';

/**
 * How the next token is chosen from the logits. The stages run as transformers' logits processors do: repetition
 * penalty, temperature, top-k, top-p, min-p.
 */
export interface SamplingOptions {
  /** 0 = greedy (argmax) */
  temperature: number;
  /** nucleus sampling: keep the smallest set of tokens whose probability reaches topP */
  topP: number;
  /** seed of the sampler's random numbers, for reproducible answers */
  seed: number;
  /** keep only the topK most probable tokens; 0 or absent: every token */
  topK?: number;
  /** drop the tokens less probable than minP × the most probable one; 0 or absent: none */
  minP?: number;
  /**
   * above 1 makes a token already in the prompt or the answer less likely, below 1 more, as transformers'
   * repetition_penalty; greedy answers honour it too; 1 or absent: off
   */
  repetitionPenalty?: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topP: 1, seed: 0 };

/** Picks the next token from its logits and the tokens of the prompt and the answer so far. */
export type Sampler = (logits: Float32Array, earlierTokens: ReadonlySet<number>) => number;

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

/** A seeded sampler: greedy at temperature 0, otherwise drawn from what every stage of `options` keeps. */
export function createSampler(options: SamplingOptions): Sampler {
  const penalty = options.repetitionPenalty ?? 1;
  if (options.temperature <= 0) return (logits, earlier) => argmax(penalizeRepeats(logits, earlier, penalty));
  const random = seededRandom(options.seed);
  // A JavaScript caller's topP left out keeps the whole distribution, as it did before the other stages.
  const cut = {
    temperature: options.temperature,
    topK: options.topK ?? 0,
    topP: options.topP ?? 1,
    minP: options.minP ?? 0,
  };
  return (logits, earlier) => sampleToken(penalizeRepeats(logits, earlier, penalty), cut, random());
}

/** l / θ where l > 0, l · θ where not, for the tokens already seen (transformers' RepetitionPenaltyLogitsProcessor). */
export function penalizeRepeats(logits: Float32Array, earlier: ReadonlySet<number>, penalty: number): Float32Array {
  if (penalty === 1) return logits;
  const penalized = logits.slice();
  for (const token of earlier)
    if (token >= 0 && token < penalized.length)
      penalized[token] = penalized[token] > 0 ? penalized[token] / penalty : penalized[token] * penalty;
  return penalized;
}

/** What the sampling stages after the repetition penalty keep; 0 turns topK and minP off, 1 topP. */
export interface SamplingCut {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
}

/**
 * A token drawn with `u` ∈ [0, 1) from softmax(logits / T), cut by top-k, top-p and min-p in turn; the kept tokens are
 * walked by probability, largest first, ties by index (inverse CDF). A NaN logit has p = 0; +∞ logits share all the
 * probability, evenly; with no finite or +∞ logit, argmax's choice. (A single NaN or ∞ made every p NaN, and the draw
 * fell on the least probable token.)
 */
export function sampleToken(logits: Float32Array, cut: SamplingCut, u: number): number {
  const best = argmax(logits);
  const max = logits[best];
  if (max === Infinity) {
    const infinite = Array.from(logits.keys()).filter((token) => logits[token] === Infinity);
    return infinite[Math.min(infinite.length - 1, Math.floor(u * infinite.length))];
  }
  if (!Number.isFinite(max)) return best;
  const { weights, total } = softmaxWeights(logits, max, cut.temperature);
  let ranked: Iterable<number> = byWeight(weights);
  let rankedTotal = total;
  if (cut.topK > 0) {
    // Top-p's shares are of what top-k kept, as transformers renormalizes between its processors.
    const kept = topK(ranked, cut.topK);
    ranked = kept;
    rankedTotal = kept.reduce((sum, token) => sum + weights[token], 0);
  }
  let candidates = nucleus(ranked, weights, rankedTotal, cut.topP);
  if (cut.minP > 0) candidates = aboveMinP(candidates, weights, cut.minP);
  // Bounds on the sum drawn from, before every candidate is ranked (see draw): the nucleus holds at least topP of the
  // total unless min-p cuts it, at most all of it; slack (8n·2⁻⁵³) covers the sums' and shares' rounding (≤ 3n·2⁻⁵³).
  const slack = 4 * weights.length * Number.EPSILON;
  const sumBounds = { low: cut.minP > 0 ? 0 : (cut.topP - slack) * rankedTotal, high: rankedTotal * (1 + slack) };
  return draw(candidates, weights, u, sumBounds);
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

/** Top-k: the first k tokens by weight. */
function topK(ranked: Iterable<number>, k: number): number[] {
  const kept: number[] = [];
  for (const token of ranked) {
    if (kept.length === k) break;
    kept.push(token);
  }
  return kept;
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

/** Min-p: p_i ≥ minP · p_max, that is w_i ≥ minP, the top token's weight being exp(0) = 1. */
function* aboveMinP(ranked: Iterable<number>, weights: Float64Array, minP: number): Generator<number> {
  for (const token of ranked) {
    if (weights[token] < minP) return;
    yield token;
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
