import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  GREEDY,
  type Sampler,
  argmax,
  createSampler,
  penalizeRepeats,
  sampleToken,
} from '../../src/engine/runtime/sampling';
import { seededRandom as mulberry32 } from '../../src/common/random';

const logits = (...values: number[]) => Float32Array.from(values);
const NONE: ReadonlySet<number> = new Set();

/** Temperature and top-p alone, as the sampler drew before top-k and min-p. */
const sampleTopP = (input: Float32Array, temperature: number, topP: number, u: number) =>
  sampleToken(input, { temperature, topK: 0, topP, minP: 0 }, u);

function softmax(values: Float32Array, temperature: number): number[] {
  const max = Math.max(...values);
  const weights = Array.from(values, (l) => Math.exp((l - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / total);
}

function draws(sampler: Sampler, input: Float32Array, n: number): number[] {
  return Array.from({ length: n }, () => sampler(input, NONE));
}

describe('argmax', () => {
  test('returns the index of the largest logit', () => {
    assert.equal(argmax(logits(0.1, -3, 7.5, 2)), 2);
    assert.equal(argmax(logits(-5, -1, -2)), 1);
    assert.equal(argmax(logits(9)), 0);
  });

  test('ties go to the smaller index', () => {
    assert.equal(argmax(logits(1, 3, 3, 3)), 1);
    assert.equal(argmax(logits(4, 4)), 0);
    assert.equal(argmax(logits(-Infinity, -Infinity, -Infinity)), 0);
  });

  test('a NaN logit is never the largest, wherever it is', () => {
    assert.equal(argmax(logits(NaN, 1, 5)), 2);
    assert.equal(argmax(logits(1, NaN, 5, NaN)), 2);
    assert.equal(argmax(logits(NaN, NaN)), 0, 'nothing to choose from: the first');
  });
});

describe('createSampler', () => {
  test('temperature 0 is argmax whatever topP and seed say', () => {
    const sampler = createSampler({ temperature: 0, topP: 0.1, seed: 99 });
    const input = logits(0.5, 2, 2, -1);
    for (let i = 0; i < 20; i++) assert.equal(sampler(input, NONE), 1);
    assert.equal(createSampler(GREEDY)(logits(3, 1, 5), NONE), 2);
  });

  test('negative temperature is treated as greedy', () => {
    assert.equal(createSampler({ temperature: -1, topP: 1, seed: 1 })(logits(0, 9, 1), NONE), 1);
  });

  test('same seed → same sequence', () => {
    const input = logits(1, 1.2, 0.8, 1.1, 0.9);
    const options = { temperature: 1, topP: 1, seed: 1234 };
    assert.deepEqual(draws(createSampler(options), input, 200), draws(createSampler(options), input, 200));
  });

  test('different seeds give different sequences', () => {
    const input = logits(1, 1.2, 0.8, 1.1, 0.9);
    const a = draws(createSampler({ temperature: 1, topP: 1, seed: 1 }), input, 200);
    const b = draws(createSampler({ temperature: 1, topP: 1, seed: 2 }), input, 200);
    assert.notDeepEqual(a, b);
  });

  test('empirical frequencies approach softmax(l / T)', () => {
    // 40 000 seeded draws: each frequency has standard deviation √(p(1−p)/N) ≤ 0.5/√40000 = 0.0025,
    // so a tolerance of 0.0125 (5σ) holds for a correct sampler with overwhelming probability and, being
    // seeded, deterministically; an off-by-temperature sampler (T=1 vs T=1.5 here) differs by > 0.05.
    const input = logits(2, 1, 0.5, 0, -1);
    const temperature = 1.5;
    const n = 40_000;
    const counts = new Array<number>(input.length).fill(0);
    const sampler = createSampler({ temperature, topP: 1, seed: 42 });
    for (let i = 0; i < n; i++) counts[sampler(input, NONE)]++;
    const expected = softmax(input, temperature);
    counts.forEach((count, token) => {
      const frequency = count / n;
      assert.ok(
        Math.abs(frequency - expected[token]) < 0.0125,
        `token ${token}: frequency ${frequency.toFixed(4)} vs p ${expected[token].toFixed(4)}`,
      );
    });
  });

  test('with top-p, only the nucleus is drawn, in proportion to its renormalised probabilities', () => {
    // p ≈ [0.6439, 0.2369, 0.0871, 0.0321]: the nucleus for topP 0.85 is tokens {0, 1} (mass 0.881).
    const input = logits(3, 2, 1, 0);
    const p = softmax(input, 1);
    const n = 20_000;
    const counts = new Array<number>(input.length).fill(0);
    const sampler = createSampler({ temperature: 1, topP: 0.85, seed: 7 });
    for (let i = 0; i < n; i++) counts[sampler(input, NONE)]++;
    assert.equal(counts[2], 0);
    assert.equal(counts[3], 0);
    // renormalised p0 = 0.731; σ = √(0.731·0.269/20000) ≈ 0.0031, tolerance 5σ
    const expected0 = p[0] / (p[0] + p[1]);
    assert.ok(Math.abs(counts[0] / n - expected0) < 0.016, `frequency ${counts[0] / n} vs ${expected0}`);
  });
});

describe('sampleToken with temperature and top-p', () => {
  // softmax at T = 1: p ≈ [0.0871, 0.6439, 0.0321, 0.2369]; by probability: 1, 3, 0, 2
  const input = logits(1, 3, 0, 2);

  test('u near 0 picks the most probable token of the nucleus', () => {
    assert.equal(sampleTopP(input, 1, 1, 0), 1);
    assert.equal(sampleTopP(input, 1, 1, 1e-9), 1);
  });

  test('u near 1 picks the least probable token of the nucleus', () => {
    assert.equal(sampleTopP(input, 1, 1, 1 - 1e-12), 2);
    // nucleus for topP 0.85 = {1, 3}: the last one is 3
    assert.equal(sampleTopP(input, 1, 0.85, 1 - 1e-12), 3);
  });

  test('u walks the nucleus in order of probability (inverse CDF)', () => {
    const p = softmax(input, 1);
    assert.equal(sampleTopP(input, 1, 1, p[1] - 1e-6), 1);
    assert.equal(sampleTopP(input, 1, 1, p[1] + 1e-6), 3);
    assert.equal(sampleTopP(input, 1, 1, p[1] + p[3] + 1e-6), 0);
    assert.equal(sampleTopP(input, 1, 1, p[1] + p[3] + p[0] + 1e-6), 2);
  });

  test('topP so small that only the top token remains', () => {
    for (const u of [0, 0.3, 0.7, 0.999999]) assert.equal(sampleTopP(input, 1, 1e-6, u), 1);
    for (const u of [0, 0.5, 0.999999]) assert.equal(sampleTopP(input, 1, 0.6, u), 1, 'p(top) 0.644 alone reaches 0.6');
  });

  test('topP just above the top token mass admits the second token', () => {
    const p = softmax(input, 1);
    assert.equal(sampleTopP(input, 1, p[1] + 0.01, 0.999), 3);
  });

  test('temperature below 1 sharpens, above 1 flattens', () => {
    // logits [2, 1, 0]: p_top(T=0.5) ≈ 0.867, p_top(T=1) ≈ 0.665, p_top(T=2) ≈ 0.506.
    const l = logits(2, 1, 0);
    assert.equal(sampleTopP(l, 0.5, 1, 0.7), 0);
    assert.equal(sampleTopP(l, 1, 1, 0.7), 1);
    assert.equal(sampleTopP(l, 2, 1, 0.6), 1);
    assert.equal(sampleTopP(l, 1, 1, 0.6), 0);
    // very low temperature behaves like argmax; very high like uniform
    assert.equal(sampleTopP(l, 0.01, 1, 0.999999), 0);
    assert.equal(sampleTopP(l, 1000, 1, 0.5), 1);
    assert.equal(sampleTopP(l, 1000, 1, 0.9), 2);
  });

  test('a NaN logit is never drawn and leaves the others their probabilities', () => {
    // Without the NaN: p ≈ [0.0871, 0.6439, 0.0321, 0.2369], as `input` above.
    const withNaN = logits(1, 3, 0, 2, NaN);
    for (const u of [0, 0.5, 0.7, 0.999999]) assert.equal(sampleTopP(withNaN, 1, 1, u), sampleTopP(input, 1, 1, u));
    assert.equal(sampleTopP(logits(NaN, 2, 1), 1, 1, 0), 1);
    assert.equal(sampleTopP(logits(NaN, NaN), 1, 1, 0.5), 0, 'nothing to choose from: the first, as argmax');
  });

  test('infinite logits: +∞ takes all the probability, only −∞ leaves argmax', () => {
    for (const u of [0, 0.5, 0.999999]) assert.equal(sampleTopP(logits(1, Infinity, 5, 2), 1, 0.9, u), 1);
    assert.equal(sampleTopP(logits(Infinity, 0, Infinity), 1, 1, 0.2), 0);
    assert.equal(sampleTopP(logits(Infinity, 0, Infinity), 1, 1, 0.8), 2);
    assert.equal(sampleTopP(logits(-Infinity, 4, -Infinity), 1, 1, 0.999999), 1);
    assert.equal(sampleTopP(logits(-Infinity, -Infinity), 1, 1, 0.7), 0);
  });

  test('is stable for large logits (no overflow)', () => {
    assert.equal(sampleTopP(logits(1000, 999, -1e30), 1, 1, 0.5), 0);
    assert.equal(sampleTopP(logits(1000, 999, -1e30), 1, 1, 0.9), 1);
  });
});

describe('top-k, min-p and the repetition penalty', () => {
  // softmax at T = 1: w = [1, 0.3679, 0.1353, 0.0498], p ≈ [0.6439, 0.2369, 0.0871, 0.0321]
  const input = logits(3, 2, 1, 0);
  const cut = (options: { temperature?: number; topK?: number; topP?: number; minP?: number }) => ({
    temperature: 1,
    topK: 0,
    topP: 1,
    minP: 0,
    ...options,
  });

  test('top-k keeps the k most probable tokens; 1 is greedy, ties to the smaller index as argmax', () => {
    for (const u of [0, 0.5, 0.999999]) assert.equal(sampleToken(input, cut({ topK: 1 }), u), 0);
    // kept {0, 1}: p' = [1, 0.3679] / 1.3679 ≈ [0.7311, 0.2689]
    assert.equal(sampleToken(input, cut({ topK: 2 }), 0.73), 0);
    assert.equal(sampleToken(input, cut({ topK: 2 }), 0.74), 1);
    assert.equal(sampleToken(input, cut({ topK: 2 }), 0.999999), 1);
    assert.equal(sampleToken(input, cut({ topK: 10 }), 0.999999), 3, 'k beyond the vocabulary keeps every token');
    assert.equal(sampleToken(logits(1, 2, 2, 0), cut({ topK: 1 }), 0.999999), 1);
  });

  test("top-p after top-k takes shares of what top-k kept, as transformers' processors do", () => {
    // Of the whole vocabulary token 0 holds 0.6439 < 0.7, so the nucleus is {0, 1}; of top-k 2's, 0.7311 ≥ 0.7.
    assert.equal(sampleToken(input, cut({ topP: 0.7 }), 0.99), 1);
    assert.equal(sampleToken(input, cut({ topK: 2, topP: 0.7 }), 0.99), 0);
  });

  test('min-p drops tokens less probable than min-p × the top one, at the temperature given', () => {
    // T = 1: w / w_top = [1, 0.3679, 0.1353, 0.0498]
    assert.equal(sampleToken(input, cut({ minP: 0.3 }), 0.999999), 1);
    assert.equal(sampleToken(input, cut({ minP: 0.4 }), 0.999999), 0);
    assert.equal(sampleToken(input, cut({ minP: 0.04 }), 0.999999), 3);
    // T = 2: w / w_top = [1, 0.6065, 0.3679, 0.2231]
    assert.equal(sampleToken(input, cut({ temperature: 2, minP: 0.3 }), 0.999999), 2);
    // p' over {0, 1} ≈ [0.7311, 0.2689] whatever min-p 0.3 cut from the rest
    assert.equal(sampleToken(input, cut({ minP: 0.3 }), 0.73), 0);
    assert.equal(sampleToken(input, cut({ minP: 0.3 }), 0.74), 1);
  });

  test('the repetition penalty divides positive logits and multiplies negative ones of tokens seen', () => {
    assert.deepEqual(
      Array.from(penalizeRepeats(logits(2, -1, 0.5, 0), new Set([0, 1, 3, 7]), 2)),
      [1, -2, 0.5, 0],
      'token 7 is past the vocabulary: ignored',
    );
    assert.deepEqual(Array.from(penalizeRepeats(logits(2, -1), new Set([0, 1]), 0.5)), [4, -0.5]);
    const unchanged = logits(2, -1);
    assert.equal(penalizeRepeats(unchanged, new Set([0]), 1), unchanged);
  });

  test('greedy and sampled answers honour the repetition penalty, and the logits stay as they were', () => {
    // 3 / 1.5 = 2 < 2.5: token 0, already in the prompt, loses the argmax to token 1.
    const step = logits(3, 2.5, 1);
    const seen = new Set([0]);
    assert.equal(createSampler(GREEDY)(step, seen), 0);
    assert.equal(createSampler({ ...GREEDY, repetitionPenalty: 1.5 })(step, seen), 1);
    assert.equal(createSampler({ temperature: 1, topP: 1, seed: 3, topK: 1, repetitionPenalty: 1.5 })(step, seen), 1);
    assert.deepEqual(Array.from(step), [3, 2.5, 1]);
  });

  test('top-k 1 at temperature 1 answers as greedy, whatever the seed', () => {
    const random = mulberry32(11);
    const sampler = createSampler({ temperature: 1, topP: 1, seed: 5, topK: 1 });
    for (let trial = 0; trial < 200; trial++) {
      const step = Float32Array.from({ length: 50 }, () => 10 * random() - 5);
      assert.equal(sampler(step, NONE), argmax(step));
    }
  });
});

/** The sampler before it ranked tokens a bucket at a time: the whole vocabulary sorted at every token. */
function fullSortReference(logits: Float32Array, temperature: number, topP: number, u: number): number {
  const best = argmax(logits);
  const max = logits[best];
  if (!Number.isFinite(max)) return sampleTopP(logits, temperature, topP, u);
  const weights = Float64Array.from(logits, (l) => (Number.isNaN(l) ? 0 : Math.exp((l - max) / temperature)));
  const total = weights.reduce((a, b) => a + b, 0);
  const order = Array.from(weights.keys()).sort((a, b) => weights[b] - weights[a] || a - b);
  const nucleus: number[] = [];
  let mass = 0;
  for (const token of order) {
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

describe('sampleToken ranks a bucket at a time', () => {
  const random = mulberry32(54);
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  /** Logits as models give them (a peak over a Gaussian bulk), flat, tied in runs, or with NaN and −∞ among them. */
  const shapes: Record<string, (vocab: number) => Float32Array> = {
    peaked: (vocab) => Float32Array.from({ length: vocab }, (_, i) => (i % 97 === 3 ? 12 : 0) + 3 * gaussian()),
    flat: (vocab) => Float32Array.from({ length: vocab }, () => 0.01 * gaussian()),
    ties: (vocab) => Float32Array.from({ length: vocab }, () => Math.floor(4 * random())),
    gaps: (vocab) => Float32Array.from({ length: vocab }, (_, i) => [NaN, -Infinity, 1e-3, 20 * gaussian()][i % 4]),
    wide: (vocab) => Float32Array.from({ length: vocab }, () => 200 * gaussian()),
  };

  test('draws exactly the token the full sort drew, for every u, topP and temperature', () => {
    let compared = 0;
    for (const [shape, make] of Object.entries(shapes))
      for (const vocab of [1, 2, 7, 100, 3000]) {
        const input = make(vocab);
        for (const temperature of [0.05, 0.7, 1, 3])
          for (const topP of [1e-6, 0.3, 0.9, 0.999, 1])
            for (let draw = 0; draw < 12; draw++) {
              const u = draw === 0 ? 0 : draw === 1 ? 1 - 2 ** -53 : random();
              const expected = fullSortReference(input, temperature, topP, u);
              assert.equal(
                sampleTopP(input, temperature, topP, u),
                expected,
                `${shape} ${vocab} T ${temperature} ${topP} ${u}`,
              );
              compared++;
            }
      }
    assert.equal(compared, 5 * 5 * 4 * 5 * 12);
  });

  test('a u at the edge between two tokens still draws what the full sort drew', () => {
    // u·S lands exactly on a cumulative weight: the bounded walks disagree, and the sum of every candidate decides.
    const input = logits(2, 1, 1, 0, -1);
    const { weights, sum } = (() => {
      const w = Array.from(input, (l) => Math.exp(l - 2));
      return { weights: w, sum: w.reduce((a, b) => a + b, 0) };
    })();
    for (const edge of [weights[0], weights[0] + weights[1], weights[0] + weights[1] + weights[2]])
      for (const u of [edge / sum, (edge / sum) * (1 - 1e-15), (edge / sum) * (1 + 1e-15)])
        assert.equal(sampleTopP(input, 1, 1, u), fullSortReference(input, 1, 1, u), `u ${u}`);
  });
});

describe('seededRandom (Mulberry32)', () => {
  test('outputs lie in [0, 1) and look uniform', () => {
    const random = mulberry32(2024);
    const n = 100_000;
    const bins = new Array<number>(10).fill(0);
    for (let i = 0; i < n; i++) {
      const x = random();
      assert.ok(x >= 0 && x < 1, `value ${x} outside [0, 1)`);
      bins[Math.floor(x * 10)]++;
    }
    // each bin expects 10 000 with σ ≈ 95; 500 is > 5σ
    for (const count of bins) assert.ok(Math.abs(count - n / 10) < 500, `bin count ${count}`);
  });

  test('is reproducible per seed and seeds are independent', () => {
    const a = mulberry32(5);
    const b = mulberry32(5);
    const c = mulberry32(6);
    const seqA = Array.from({ length: 10 }, a);
    assert.deepEqual(seqA, Array.from({ length: 10 }, b));
    assert.notDeepEqual(seqA, Array.from({ length: 10 }, c));
  });

  test('seeds are taken as unsigned 32-bit integers', () => {
    assert.deepEqual(Array.from({ length: 5 }, mulberry32(-1)), Array.from({ length: 5 }, mulberry32(0xffffffff)));
  });
});
