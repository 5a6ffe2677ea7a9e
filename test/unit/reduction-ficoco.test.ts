import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import { seededRandom } from '../../src/common/random';
import { Method, ModelShape } from '../../src/reduction/method';
import { localPenalty, weightedDifference } from '../../src/reduction/methods/ficoco';
import { ficocoL } from '../../src/reduction/methods/ficocoL';
import { ficocoV } from '../../src/reduction/methods/ficocoV';
import { visionSideTokens } from '../../src/reduction/methods/ficocoVL';
import { Split, StepRecord, removedTokens, runStep, splitByScore } from '../../src/reduction/paradigm';
import { METHODS, planReduction, resolveParams } from '../../src/reduction/registry';
import { adaptiveReceivers } from '../../src/reduction/stages/correlate';
import { correlationProblems, mergeIntoReceivers } from '../../src/reduction/stages/compress';
import { HookSite, SiteView, TokenState, VisualSpan, validateTokenState } from '../../src/reduction/tokenState';

/**
 * Hand-computed checks of FiCoCo-V and FiCoCo-L (arXiv 2411.17686v4: filter, correlate, compress) on inputs
 * small enough that every expected number is worked out in the comments.
 */

const SHAPE: ModelShape = {
  visionLayers: 4,
  textLayers: 4,
  visualTokens: 16,
  grid: { rows: 4, cols: 4 },
  hasClassToken: true,
};

/** LLaVA-1.5's shapes: CLIP-L/336 run to its 23rd layer ([CLS] + 24 × 24 patches), a 32-layer decoder. */
const LLAVA_15: ModelShape = {
  visionLayers: 23,
  textLayers: 32,
  visualTokens: 576,
  grid: { rows: 24, cols: 24 },
  hasClassToken: true,
};

function close(actual: ArrayLike<number>, expected: number[], tolerance = 1e-5): void {
  assert.equal(actual.length, expected.length, `length ${actual.length}, expected ${expected.length}`);
  for (let i = 0; i < expected.length; i++)
    assert.ok(Math.abs(actual[i] - expected[i]) <= tolerance, `[${i}] = ${actual[i]}, expected ${expected[i]}`);
}

function imageSpan(start: number, rows: number, cols: number, alivePatches?: number[]): VisualSpan {
  const patches = alivePatches ?? Array.from({ length: rows * cols }, (_, p) => p);
  const patchOwner = new Int32Array(rows * cols).fill(-1);
  patches.forEach((p, i) => (patchOwner[p] = start + i));
  return { start, count: patches.length, grid: { rows, cols }, patchOwner, tokenPatch: Int32Array.from(patches) };
}

interface ViewSpec {
  site: HookSite;
  count: number;
  width?: number;
  hidden?: number[];
  spans: VisualSpan[];
  /** logits or probabilities by (query, key) over sequence indices */
  attention: (query: number, key: number) => number;
  hasClassToken: boolean;
  meanKeys?: number[];
}

function makeView(spec: ViewSpec): SiteView {
  const width = spec.width ?? 1;
  const { count } = spec;
  return {
    site: spec.site,
    hidden: Float32Array.from(spec.hidden ?? Array.from({ length: count * width }, (_, i) => i)),
    count,
    width,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: spec.spans,
    attention: Float32Array.from({ length: count * count }, (_, e) => spec.attention(Math.floor(e / count), e % count)),
    keyCount: count,
    hasClassToken: spec.hasClassToken,
    ...(spec.meanKeys ? { meanKeys: Float32Array.from(spec.meanKeys) } : {}),
  };
}

/**
 * Runs the method's first step on `view` (one image), removing `remove` tokens, with the given parameters;
 * `scores` are the filter's ranking scores (span order).
 */
function step(
  method: Method,
  view: SiteView,
  remove: number,
  given: Record<string, unknown> = {},
  shape: ModelShape = SHAPE,
): { out: TokenState; record: StepRecord; scores: Float32Array } {
  const [first] = method.plan(shape, 1, resolveParams(method, given));
  const log: StepRecord[] = [];
  const out = runStep({ ...first, remove }, view, log);
  assert.deepEqual(correlationProblems(log[0].split, log[0].correlation), []);
  const { scores } = first.filter({ view, span: view.spans[0], remove, params: first.params });
  assert.ok(scores, `${method.name}'s filter ranks by a score`);
  return { out, record: log[0], scores };
}

/** Receivers and weights of source k. */
function receiversOf(record: StepRecord, k: number): { receivers: number[]; weights: number[] } {
  const { offsets, receivers, weights } = record.correlation;
  return {
    receivers: Array.from(receivers.subarray(offsets[k], offsets[k + 1])),
    weights: Array.from(weights.subarray(offsets[k], offsets[k + 1])),
  };
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

describe('FiCoCo-V, hand-computed on a 4×4 grid with [CLS] (17 tokens)', () => {
  // Patch p (raster) has row mean p_i of its patch-key logits and [CLS] logit c_i. Windows (2×2):
  // W0 = {0,1,4,5}, W1 = {2,3,6,7}, W2 = {8,9,12,13}, W3 = {10,11,14,15}.
  //            p: 4 in patch 0; 1 in 1,2,3,4,5,6,7,10,15; 0 elsewhere → ‖p‖ = √(16 + 9) = 5, p̂ ∈ {0.8, 0.2, 0}
  //            c: 1 in 10,11,14,15; 0 elsewhere          → ‖c‖ = √4 = 2,      ĉ ∈ {0.5, 0}
  const P = [4, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1];
  const C = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1];
  // s = 0.65·p̂ − 0.35·ĉ (code weights):
  //   patch 0: 0.65·0.8 = 0.52;  p̂ = 0.2, ĉ = 0: 0.13;  p̂ = 0, ĉ = 0: 0;
  //   10, 15: 0.13 − 0.175 = −0.045;  11, 14: 0 − 0.175 = −0.175
  const RAW = [0.52, 0.13, 0.13, 0.13, 0.13, 0.13, 0.13, 0.13, 0, 0, -0.045, -0.175, 0, 0, -0.175, -0.045];
  // Local penalty, one boost per window: W0 max = patch 0 (0.52 > 0 → 1.04); W1 all 0.13, first in raster
  // order = patch 2 (→ 0.26); W2 all 0, patch 8 (0 stays 0); W3 max −0.045, tie 10/15 → patch 10 (→ −0.0225).
  const PENALISED = [1.04, 0.13, 0.26, 0.13, 0.13, 0.13, 0.13, 0.13, 0, 0, -0.0225, -0.175, 0, 0, -0.175, -0.045];

  const gridView = (p: number[], c: number[], scale = 1) =>
    makeView({
      site: 'vision:0',
      count: 17,
      spans: [imageSpan(1, 4, 4)],
      hasClassToken: true,
      // row 0 = [CLS] query; patch rows constant, so their row mean over the patch keys is p_i
      attention: (q, k) => (k === 0 ? 0 : q === 0 ? scale * c[k - 1] : scale * p[q - 1]),
    });

  test('attention holding NaN (an overflow upstream) is refused by name, not ranked in index order', () => {
    const view = gridView(P, C);
    view.attention![5 * 17 + 3] = NaN;
    // A provider failure: the chat offers ficoco.provider, where the CPU's float32 does not overflow.
    assert.throws(
      () => step(ficocoV, view, 2),
      (error: unknown) =>
        error instanceof FicocoError &&
        error.kind === 'provider' &&
        /^The attention the reduction step at vision:0 reads holds NaN \(at 88\): .* run it on the CPU/.test(
          error.message,
        ),
    );
    // −∞ (a masked logit) is not an overflow.
    const masked = gridView(P, C);
    masked.attention![5 * 17 + 3] = -Infinity;
    assert.doesNotThrow(() => step(ficocoV, masked, 2));
  });

  test("filter scores: code weights on L2-normalised terms, independent of the logits' scale", () => {
    for (const scale of [1, 10]) {
      close(step(ficocoV, gridView(P, C, scale), 2, { penalty: 1 }).scores, RAW);
    }
  });

  test(
    'local penalty: exactly one boost per 2×2 window (s>0 → 2s, s<0 → s/2, 0 → 0); S = the top r, ties ' +
      'to the smaller position',
    () => {
      const penalised = step(ficocoV, gridView(P, C), 4);
      close(penalised.scores, PENALISED);
      // top 4: patch 0 (1.04), patch 2 (0.26), then the 0.13 tie among 1,3,4,5,6,7 → patches 1 and 3 (sequence 1…4)
      assert.deepEqual(Array.from(penalised.record.split.sources), [1, 2, 3, 4]);
      // r = 2 with the penalty: patches 0 and 2; without it patches 0 and 1 (the 0.13 tie → smallest position)
      assert.deepEqual(Array.from(step(ficocoV, gridView(P, C), 2).record.split.sources), [1, 3]);
      assert.deepEqual(Array.from(step(ficocoV, gridView(P, C), 2, { penalty: 1 }).record.split.sources), [1, 2]);
      const changed = PENALISED.filter((s, i) => s !== RAW[i]).length;
      assert.equal(changed, 3, "W2's boosted 0 stays 0, so three scores change");
    },
  );

  test('local penalty never lowers a score, never boosts dropped cells, and skips the last row/column of odd grids', () => {
    // 5×5 grid: floor(5/2)² = 4 full windows over rows/cols 0…3; patches 4 (row 0, col 4), 20 (row 4, col 0)
    // and 24 hold the largest scores but lie outside every window, so they stay 5.
    const scores = Float64Array.from({ length: 25 }, (_, p) =>
      [4, 20, 24].includes(p) ? 5 : p % 3 === 0 ? -0.3 : 0.1 * (p % 7),
    );
    const patches = Int32Array.from({ length: 25 }, (_, p) => p);
    const boosted = localPenalty(scores, patches, { rows: 5, cols: 5 }, 2, 2);
    const changed = Array.from(boosted.keys()).filter((i) => boosted[i] !== scores[i]);
    for (const i of boosted.keys()) assert.ok(boosted[i] >= scores[i], `score ${i} lowered`);
    assert.ok(
      changed.every((p) => p % 5 < 4 && Math.floor(p / 5) < 4),
      'nothing in row or column 4 is boosted',
    );
    // windows: {0,1,5,6}: 0.1·[0→−0.3, 1, 5, 6→−0.3] → 0.5 at 5 → 1.0; {2,3,7,8}: [0.2, −0.3, 0, 0.1] → 2;
    // {10,11,15,16}: [0.3, 0.4, −0.3, 0.2] → 11; {12,13,17,18}: [−0.3, 0.6, 0.3, −0.3] → 13
    assert.deepEqual(changed, [2, 5, 11, 13]);
    // 27×27: 13×13 windows; the same check on a grid whose last row/column (26) is all larger
    const big = Float64Array.from({ length: 27 * 27 }, (_, p) =>
      p % 27 === 26 || p >= 26 * 27 ? 9 : ((p * 7919) % 101) / 100,
    );
    const bigBoosted = localPenalty(big, Int32Array.from(big.keys()), { rows: 27, cols: 27 }, 2, 2);
    const bigChanged = Array.from(big.keys()).filter((i) => bigBoosted[i] !== big[i]);
    assert.equal(bigChanged.length, 169);
    assert.ok(bigChanged.every((p) => p % 27 !== 26 && p < 26 * 27));
    // Dropped cells (padding): a 4×4 grid where only patches 0, 5, 6, 15 are alive. W0 = {0, 5} → one boost,
    // W1 = {6} → boosted, W2 has nobody → no boost, W3 = {15} → boosted: 3 boosts for 4 alive tokens.
    const alive = Int32Array.of(0, 5, 6, 15);
    const sparse = localPenalty(Float64Array.of(-1, -2, 0.5, 3), alive, { rows: 4, cols: 4 }, 2, 2);
    assert.deepEqual(Array.from(sparse), [-0.5, -2, 1, 6]);
  });

  test('quantile K rule: |J| = M − 1 − floor(ε(M − 1)) for distinct values; constant row → K = 1', () => {
    const receiverCount = (m: number, epsilon: number, strict: boolean, value: (j: number) => number) => {
      const split: Split = { sources: Int32Array.of(0), targets: Int32Array.from({ length: m }, (_, j) => j + 1) };
      const correlation = adaptiveReceivers(
        split,
        () => ({ candidates: split.targets, values: Float64Array.from(split.targets, (j) => value(j)) }),
        { epsilon, strict, probabilities: false },
      );
      return correlation.offsets[1];
    };
    // (37·j) mod M permutes 0…M−1 (37 divides none of these M): distinct values in scrambled order.
    const distinct = (m: number) => (j: number) => ((37 * j) % m) / m;
    // ε(M−1) = 531.934 → 533 − 531 = 2;  490.018 → 491 − 490 = 1;  499.998 → 501 − 499 = 2;  2873.242 → 2879 − 2873 = 6
    for (const [m, k] of [
      [534, 2],
      [492, 1],
      [502, 2],
      [2880, 6],
    ])
      assert.equal(receiverCount(m, 0.998, true, distinct(m)), k, `M = ${m}`);
    // M = 501: ε(M−1) = 499 exactly, τ is the 500th value itself: '>' keeps 1, '≥' keeps 2
    assert.equal(receiverCount(501, 0.998, true, distinct(501)), 1);
    assert.equal(receiverCount(501, 0.998, false, distinct(501)), 2);
    // constant row: nothing is strictly above τ → fallback to one receiver; ε = 1 with '>' likewise
    assert.equal(
      receiverCount(50, 0.998, true, () => 0.25),
      1,
    );
    assert.equal(receiverCount(50, 1, true, distinct(50)), 1);
  });

  // A 2×2 grid with [CLS] (5 tokens). Patch row 1 (sequence 1) has logits [20, 0, ln 3, −5] to the patches,
  // every other row is 0 and [CLS] attends 0 everywhere: p = [(20 + ln3 − 5)/4, 0, 0, 0], c = 0 → ĉ = 0,
  // so s = 0.65·p̂ and patch 0 leaves. Its candidates are sequence 2, 3, 4 with logits [0, ln 3, −5];
  // ε = 0.5 with '≥': position 0.5·2 = 1 → τ = 0 (the middle of −5, 0, ln 3) → J = {2, 3}; α = softmax(0, ln 3) = (1/4,
  // 3/4).
  const mergeView = (hidden: number[]) =>
    makeView({
      site: 'vision:0',
      count: 5,
      width: 2,
      hidden,
      spans: [imageSpan(1, 2, 2)],
      hasClassToken: true,
      attention: (q, k) => (q === 1 ? [0, 20, 0, Math.log(3), -5][k] : 0),
    });

  test('α is the softmax restricted to J and sums to 1; the compress is self-preserving', () => {
    // hidden: [CLS] = (9, 9), source = (8, 4), receivers (1, 1) and (2, 0), the untouched patch (5, 5)
    const { out, record } = step(ficocoV, mergeView([9, 9, 8, 4, 1, 1, 2, 0, 5, 5]), 1, {
      epsilon: 0.5,
      strictThreshold: false,
      penalty: 1,
    });
    assert.deepEqual(Array.from(record.split.sources), [1]);
    const { receivers, weights } = receiversOf(record, 0);
    assert.deepEqual(receivers, [2, 3]);
    close(weights, [0.25, 0.75], 1e-7);
    // X_2 = ((1, 1) + ¼(8, 4)) / (1 + ¼) = (3, 2)/1.25 = (2.4, 1.6)
    // X_3 = ((2, 0) + ¾(8, 4)) / (1 + ¾) = (8, 3)/1.75 = (4.571429, 1.714286)
    close(out.hidden, [9, 9, 2.4, 1.6, 8 / 1.75, 3 / 1.75, 5, 5]);
    close(out.sizes, [1, 1.25, 1.75, 1]);
    // a receiver of one source keeps 1/(1 + α) ≥ 0.5 of itself: 1/1.25 = 0.8, 1/1.75 ≈ 0.571
    for (const alpha of weights) assert.ok(1 / (1 + alpha) >= 0.5);
    // a constant input stays constant: (x + Σα x)/(1 + Σα) = x
    const constant = step(ficocoV, mergeView(new Array(10).fill(0.7)), 1, {
      epsilon: 0.5,
      strictThreshold: false,
      penalty: 1,
    }).out;
    close(constant.hidden, new Array(8).fill(0.7), 1e-6);
  });

  test('self-preserving merge of two sources into one receiver: (X_j + Σα X_i)/(1 + Σα)', () => {
    // receiver (1, 2) gets source (5, 10) with α = 1 and source (3, 0) with α = 0.5:
    // ((1, 2) + (5, 10) + (1.5, 0)) / 2.5 = (7.5, 12)/2.5 = (3, 4.8): the receiver keeps 1/2.5 = 0.4 of itself (Σα > 1)
    const view = makeView({
      site: 'vision:0',
      count: 4,
      width: 2,
      hidden: [1, 2, 5, 10, 3, 0, 7, 7],
      spans: [imageSpan(0, 2, 2)],
      hasClassToken: false,
      attention: () => 0,
    });
    const split: Split = { sources: Int32Array.of(1, 2), targets: Int32Array.of(0, 3) };
    const correlation = {
      offsets: Int32Array.of(0, 1, 3),
      receivers: Int32Array.of(0, 0, 3),
      weights: Float32Array.of(1, 0.5, 0.5),
    };
    const out = mergeIntoReceivers({ weighting: 'self-preserving', normalize: true })(view, split, correlation, {});
    // token 3 = ((7, 7) + 0.5(3, 0)) / 1.5 = (8.5, 7)/1.5
    close(out.hidden, [3, 4.8, 8.5 / 1.5, 7 / 1.5]);
  });

  test("receivers 'targets+cls': [CLS] takes its share, and a source's patches go to its strongest image receiver", () => {
    // Every patch attends most to [CLS]; among the patches, to the next one in raster order.
    const view = makeView({
      site: 'vision:0',
      count: 5,
      spans: [imageSpan(1, 2, 2)],
      hasClassToken: true,
      attention: (q, k) => (k === 0 ? 5 : k === q + 1 ? 2 : 0),
    });
    const [first] = ficocoV.plan(SHAPE, 1, resolveParams(ficocoV, { receivers: 'targets+cls', epsilon: 0.5 }));
    const log: StepRecord[] = [];
    const out = runStep({ ...first, remove: 1 }, view, log);
    const { split, correlation } = log[0];
    assert.deepEqual(correlationProblems(split, correlation, [0]), []);
    const source = split.sources[0];
    const { receivers, weights } = receiversOf(log[0], 0);
    assert.equal(receivers[weights.indexOf(Math.max(...weights))], 0, '[CLS] is the strongest receiver');
    assert.notEqual(out.hidden[0], view.hidden[0], '[CLS] took a share');
    validateTokenState(out, 'vision:0', 1);
    // The source's patch goes to its strongest receiver inside the image, not to [CLS].
    const strongestInImage = receivers
      .filter((receiver) => receiver !== 0)
      .reduce((best, receiver) =>
        weights[receivers.indexOf(receiver)] > weights[receivers.indexOf(best)] ? receiver : best,
      );
    const sourcePatch = view.spans[0].tokenPatch[source - 1];
    assert.equal(out.spans[0].patchOwner[sourcePatch], strongestInImage - (strongestInImage > source ? 1 : 0));
  });

  test('sign conventions (§8 item 10): wPatch = 0 → lowest [CLS] attention first; wCls = 0 → highest row mean first', () => {
    const span = imageSpan(1, 4, 4);
    const p = Float64Array.from(P);
    const c = Float64Array.of(0.3, -0.2, 0.9, 0.1, 0.5, -0.7, 0.2, 0.4, 0.6, -0.1, 0.8, 0, 0.35, -0.5, 0.7, 0.05);
    // lowest c: −0.7 (patch 5), −0.5 (13), −0.2 (1) → sequence 2, 6, 14
    assert.deepEqual(
      Array.from(
        splitByScore(span, weightedDifference(p, c, { weightFirst: 0, weightSecond: 0.35, normalize: true }), 3)
          .sources,
      ),
      [2, 6, 14],
    );
    // highest p: 4 (patch 0), then the 1s in raster order: patches 1, 2 → sequence 1, 2, 3
    assert.deepEqual(
      Array.from(
        splitByScore(span, weightedDifference(p, c, { weightFirst: 0.65, weightSecond: 0, normalize: true }), 3)
          .sources,
      ),
      [1, 2, 3],
    );
    // through the method: with every row mean equal only −ĉ ranks; with c constant only p̂ ranks
    const flatP = new Array(16).fill(1);
    assert.deepEqual(
      Array.from(step(ficocoV, gridView(flatP, Array.from(c)), 3, { penalty: 1 }).record.split.sources),
      [2, 6, 14],
    );
    assert.deepEqual(
      Array.from(step(ficocoV, gridView(P, new Array(16).fill(1)), 3, { penalty: 1 }).record.split.sources),
      [1, 2, 3],
    );
  });

  test('without [CLS], the semantic term is −cos to the mean key (§5)', () => {
    // keys k = (1,0), (0,1), (1,1), (−1,0); μ = (0.25, 0.5), ‖μ‖ = √0.3125
    // cos(μ, k) = 0.25/‖μ‖ = 1/√5, 2/√5, 0.75/(‖μ‖√2) = 3/√10, −1/√5; a^Eq = −cos, ‖a^Eq‖ = √(1/5 + 4/5 + 9/10 + 1/5) =
    // √2.1
    // p: every row mean 1 → p̂ = 1/2; s = 0.65·½ + 0.35·cos/√2.1 = 0.43301, 0.54102, 0.55413, 0.21699;
    // one 2×2 window: its max, patch 2, doubles to 1.10826 and leaves first
    const view = makeView({
      site: 'vision:0',
      count: 4,
      spans: [imageSpan(0, 2, 2)],
      hasClassToken: false,
      attention: () => 1,
      meanKeys: [1, 0, 0, 1, 1, 1, -1, 0],
    });
    const cos = [1 / Math.sqrt(5), 2 / Math.sqrt(5), 3 / Math.sqrt(10), -1 / Math.sqrt(5)];
    const raw = cos.map((v) => 0.325 + (0.35 * v) / Math.sqrt(2.1));
    const { record, scores } = step(
      ficocoV,
      view,
      1,
      {},
      { ...SHAPE, visualTokens: 4, grid: { rows: 2, cols: 2 }, hasClassToken: false },
    );
    close(scores, [raw[0], raw[1], 2 * raw[2], raw[3]]);
    assert.deepEqual(Array.from(record.split.sources), [2]);
  });
});

describe('FiCoCo-L, hand-computed on 2 text + 6 visual + 3 text tokens', () => {
  // Sequence: text-before 0, 1 | visual v0…v5 = 2…7 | text-after t0…t2 = 8, 9, 10 (M = 3).
  const VV = [
    [2, 1, 0, 0, 0, 0], // v0: Σ 3
    [0, 2, 0, 1, 0, 0], // v1: Σ 3
    [0, 1, 3, 2, 0, 0], // v2: Σ 6
    [1, 1, 1, 1, 0, 0], // v3: Σ 4
    [1, 0, 0, 0, 2, 1], // v4: Σ 4
    [0, 0, 0, 0, 2, 2], // v5: Σ 4
  ];
  const VT = [
    [0, 0, 0], // mean 0
    [3, 0, 0], // mean 1
    [1, 2, 0], // mean 1
    [0, 3, 3], // mean 2
    [0, 0, 1], // mean 1/3
    [6, 0, 0], // mean 2
  ];
  const TV = [
    [1, 0, 0, 0, 0, 2],
    [0, 1, 0, 0, 0, 0],
    [0, 0, 0, 1, 0, 1],
  ];
  // visual → text-before (used only with textSet allText): v0 → (10, 10), others 0
  const VB = [
    [10, 10],
    [0, 0],
    [0, 0],
    [0, 0],
    [0, 0],
    [0, 0],
  ];
  const HIDDEN = [-1, -2, 10, 20, 30, 40, 50, 60, -3, -4, -5];

  function sequenceView(textAfter = 3, systemAttention = 0): SiteView {
    const count = 8 + textAfter;
    const visual = (t: number) => (t >= 2 && t < 8 ? t - 2 : -1);
    return makeView({
      site: 'llm:1',
      count,
      hidden: HIDDEN.slice(0, count),
      spans: [imageSpan(2, 2, 3)],
      hasClassToken: false,
      attention: (q, k) => {
        const [vq, vk] = [visual(q), visual(k)];
        if (q < 2 || k < 2) return vq >= 0 && k < 2 ? VB[vq][k] : systemAttention;
        if (vq >= 0 && vk >= 0) return VV[vq][vk];
        if (vq >= 0) return VT[vq][k - 8];
        if (vk >= 0) return TV[q - 8][vk];
        return 0;
      },
    });
  }

  test('filter scores s = β·Σ_j VV − (1−β)·mean_k VT, and their switches', () => {
    // β = 0.6: v0 1.8 − 0 = 1.8; v1 1.8 − 0.4 = 1.4; v2 3.6 − 0.4 = 3.2; v3 2.4 − 0.8 = 1.6; v4 2.4 − 0.4/3; v5 2.4 −
    // 0.8 = 1.6
    const { record, scores } = step(ficocoL, sequenceView(), 2);
    close(scores, [1.8, 1.4, 3.2, 1.6, 2.4 - 0.4 / 3, 1.6]);
    assert.deepEqual(Array.from(record.split.sources), [4, 6]);
    assert.deepEqual(Array.from(record.split.targets), [2, 3, 5, 7]);
    // vvAggregate mean (Σ/6): v0 0.3; v1 0.3 − 0.4; v2 0.6 − 0.4; v3 0.4 − 0.8; v4 0.4 − 0.4/3; v5 0.4 − 0.8 → S = {v0,
    // v4}
    const mean = step(ficocoL, sequenceView(), 2, { vvAggregate: 'mean' });
    close(mean.scores, [0.3, -0.1, 0.2, -0.4, 0.4 - 0.4 / 3, -0.4]);
    assert.deepEqual(Array.from(mean.record.split.sources), [2, 6]);
    // allText (M = 5, text before too): v0 mean (10 + 10)/5 = 4 → 1.8 − 1.6 = 0.2; v1 3/5 → 1.8 − 0.24;
    // v2 3/5 → 3.6 − 0.24; v3 6/5 → 2.4 − 0.48; v4 1/5 → 2.4 − 0.08; v5 6/5 → 2.4 − 0.48
    close(step(ficocoL, sequenceView(), 2, { textSet: 'allText' }).scores, [0.2, 1.56, 3.36, 1.92, 2.32, 1.92]);
    // probs: the text term is what text pays the token, mean_k TV[k,i] = 1/3, 1/3, 0, 1/3, 0, 1
    close(step(ficocoL, sequenceView(), 2, { attention: 'probs' }).scores, [
      1.8 - 0.4 / 3,
      1.8 - 0.4 / 3,
      3.6,
      2.4 - 0.4 / 3,
      2.4,
      2.0,
    ]);
  });

  test('indirect correlation C_ij = γ·VV[i,j] + (1−γ)·Σ_k VT[i,k]·TV[k,j] over the targets', () => {
    // T = (v0, v1, v3, v5). Source v2: VV = (0, 1, 2, 0); indirect = 1·TV[t0] + 2·TV[t1] = (1, 2, 0, 2)
    //   C = 0.6·VV + 0.4·ind = (0.4, 1.4, 1.2, 0.8). ε = 0.5: position 1.5 → τ = 0.8 + 0.5·0.4 = 1.0 → J = {v1, v3},
    //   α = softmax(1.4, 1.2) = (σ(0.2), σ(−0.2)) = (0.549834, 0.450166)
    // Source v4: VV = (1, 0, 0, 1); indirect = 1·TV[t2] = (0, 0, 1, 1); C = (0.6, 0, 0.4, 1.0);
    //   τ = 0.4 + 0.5·0.2 = 0.5 → J = {v0, v5}, α = (σ(−0.4), σ(0.4)) = (0.401312, 0.598688)
    const { record } = step(ficocoL, sequenceView(), 2, { epsilon: 0.5 });
    assert.deepEqual(receiversOf(record, 0).receivers, [3, 5]);
    close(receiversOf(record, 0).weights, [sigmoid(0.2), sigmoid(-0.2)], 1e-7);
    assert.deepEqual(receiversOf(record, 1).receivers, [2, 7]);
    close(receiversOf(record, 1).weights, [sigmoid(-0.4), sigmoid(0.4)], 1e-7);
    // ε = 0.998 with 4 candidates: 3 − floor(2.994) = 1 receiver, the argmax: v1 for v2, v5 for v4
    const k1 = step(ficocoL, sequenceView(), 2).record;
    assert.deepEqual(Array.from(k1.correlation.receivers), [3, 7]);
    // indirectScale 1/M: v2's indirect (1, 2, 0, 2)/3 → C = (0.13333, 0.86667, 1.2, 0.26667), τ = 0.26667 + 0.5·0.6;
    //   J = {v1, v3}, α = (σ(−1/3), σ(1/3)) = (0.417430, 0.582570)
    const scaled = step(ficocoL, sequenceView(), 2, { epsilon: 0.5, indirectScale: 'inverseM' }).record;
    close(receiversOf(scaled, 0).weights, [sigmoid(-1 / 3), sigmoid(1 / 3)], 1e-7);
  });

  test('with probabilities α is C over its sum on J (§2.7), not a softmax of probabilities', () => {
    // probs: indirect = Σ_k TV[k,i]·TV[k,j], 0 for v2 (no text attends to it). Source v2: C = 0.6·(0, 1, 2, 0) over
    //   (v0, v1, v3, v5); ε = 0.5: τ = 0.3 → J = {v1, v3}, α = (0.6, 1.2)/1.8 (a softmax would give σ(∓0.6))
    const { record } = step(ficocoL, sequenceView(), 2, { epsilon: 0.5, attention: 'probs' });
    assert.deepEqual(Array.from(record.split.sources), [4, 6]);
    assert.deepEqual(receiversOf(record, 0).receivers, [3, 5]);
    close(receiversOf(record, 0).weights, [1 / 3, 2 / 3], 1e-7);
  });

  test(
    "compress: normalized (X_j + Σα X_i)/(1 + Σα) vs the code's sum X_j + Σα X_i; kept tokens keep " +
      'their positions',
    () => {
      const [a1, a3, a0, a5] = [sigmoid(0.2), sigmoid(-0.2), sigmoid(-0.4), sigmoid(0.4)];
      // v0 = (10 + 0.401312·50)/1.401312 = 21.45533; v1 = (20 + 0.549834·30)/1.549834 = 23.54770;
      // v3 = (40 + 0.450166·30)/1.450166 = 36.89576; v5 = (60 + 0.598688·50)/1.598688 = 56.25513
      const normalized = step(ficocoL, sequenceView(), 2, { epsilon: 0.5 }).out;
      close(
        normalized.hidden,
        [
          -1,
          -2,
          (10 + a0 * 50) / (1 + a0),
          (20 + a1 * 30) / (1 + a1),
          (40 + a3 * 30) / (1 + a3),
          (60 + a5 * 50) / (1 + a5),
          -3,
          -4,
          -5,
        ],
        1e-4,
      );
      // sum: v0 = 10 + 20.06562 = 30.06562; v1 = 20 + 16.49502; v3 = 40 + 13.50498; v5 = 60 + 29.93438
      const summed = step(ficocoL, sequenceView(), 2, { epsilon: 0.5, compress: 'sum' }).out;
      close(summed.hidden, [-1, -2, 10 + a0 * 50, 20 + a1 * 30, 40 + a3 * 30, 60 + a5 * 50, -3, -4, -5], 1e-4);
      assert.deepEqual(Array.from(summed.positions), [0, 1, 2, 3, 5, 7, 8, 9, 10]);
      // sizes: each source's α sum to 1, so Σ sizes over the span stays 6
      close(summed.sizes, [1, 1, 1 + a0, 1 + a1, 1 + a3, 1 + a5, 1, 1, 1]);
    },
  );

  test('no text after the image (M = 0): the text and indirect terms are 0', () => {
    // s = 0.6·Σ VV = (1.8, 1.8, 3.6, 2.4, 2.4, 2.4) → S = {v2, v3} (the 2.4 tie goes to v3)
    const { record, scores } = step(ficocoL, sequenceView(0), 2);
    close(scores, [1.8, 1.8, 3.6, 2.4, 2.4, 2.4]);
    assert.deepEqual(Array.from(record.split.sources), [4, 5]);
    // T = (v0, v1, v4, v5). v2: C = 0.6·(0, 1, 0, 0) → v1. v3: C = 0.6·(1, 1, 0, 0) = (0.6, 0.6, 0, 0):
    // τ = 0.6 + 0.994·0 = 0.6, nothing strictly above → fallback argmax, first of the tie → v0
    assert.deepEqual(Array.from(record.correlation.receivers), [3, 2]);
    // the same holds whatever attention flows to or from the system prompt (text set = after the image)
    assert.deepEqual(Array.from(step(ficocoL, sequenceView(0, 1e6), 2).record.correlation.receivers), [3, 2]);
  });

  test('system-prompt and instruction tokens are never candidates and pass through unchanged', () => {
    const { out, record } = step(ficocoL, sequenceView(3, 1e6), 5, { epsilon: 0.5 });
    const all = [...record.split.sources, ...record.split.targets].sort((x, y) => x - y);
    assert.deepEqual(all, [2, 3, 4, 5, 6, 7]);
    for (const receiver of record.correlation.receivers) assert.ok(receiver >= 2 && receiver < 8);
    assert.deepEqual(Array.from(out.hidden.subarray(0, 2)), [-1, -2]);
    assert.deepEqual(Array.from(out.hidden.subarray(3)), [-3, -4, -5]);
    assert.equal(out.spans[0].count, 1);
  });

  test('long text: the indirect sum over 2048 text tokens of logits up to ±300 stays finite (it overflows fp16)', () => {
    // |Σ_k VT·TV| can reach 2048·300·300 ≈ 1.8e8 ≫ 65504
    const random = seededRandom(3);
    const textAfter = 2048;
    const count = 8 + textAfter;
    const attention = Float32Array.from({ length: count * count }, () => Math.round((random() * 2 - 1) * 300));
    const view: SiteView = {
      site: 'llm:1',
      hidden: Float32Array.from({ length: count }, () => random()),
      count,
      width: 1,
      sizes: new Float32Array(count).fill(1),
      positions: Int32Array.from({ length: count }, (_, i) => i),
      spans: [imageSpan(2, 2, 3)],
      attention,
      keyCount: count,
      hasClassToken: false,
    };
    for (const compress of ['normalized', 'sum']) {
      const { out, record, scores } = step(ficocoL, view, 4, { compress, epsilon: 0.5 });
      assert.ok(scores.every(Number.isFinite));
      assert.ok(record.correlation.weights.every(Number.isFinite));
      assert.ok(out.hidden.every(Number.isFinite));
      assert.equal(out.spans[0].count, 2);
    }
  });
});

describe('FiCoCo-V schedule on LLaVA-1.5', () => {
  test('layers 12…22 of the 23 that run remove 576 − B as evenly as possible, earlier layers one more', () => {
    const run = (n: number, r: number) => new Array<number>(n).fill(r);
    for (const [budget, removals] of [
      [192, [...run(10, 35), 34]],
      [128, [...run(8, 41), ...run(3, 40)]],
      [64, [...run(6, 47), ...run(5, 46)]],
    ] as const) {
      const { steps } = planReduction('ficoco-v', { tokens: budget }, LLAVA_15);
      assert.deepEqual(
        steps.map((step) => step.site),
        Array.from({ length: 11 }, (_, i) => `vision:${12 + i}`),
      );
      assert.deepEqual(
        steps.map((step) => step.remove),
        removals,
        `budget ${budget}`,
      );
    }
  });
});

test('references cite what a reader can open; FiCoCo-V and FiCoCo-L say how to get the official schedule', () => {
  for (const method of METHODS) assert.doesNotMatch(method.reference, /ficoco-spec/, method.name);
  for (const [method, r, example] of [
    [ficocoV, 42, 'eleven 42s at budget 114'],
    [ficocoL, 14, 'twenty-seven 14s at budget 198'],
  ] as const)
    assert.ok(
      method.reference.includes(
        'By default the schedule removes tokens evenly over the reducing layers to end exactly at the budget, ' +
          `where the official code removes a constant r = ${r} per layer; the schedule parameter reproduces it ` +
          `(${example} on LLaVA-1.5).`,
      ),
      method.name,
    );
});

describe('FiCoCo-VL budget split', () => {
  test('the vision side keeps round(N^(1−share)·B^share): the geometric midpoint by default', () => {
    // √(576·64) = 192; √(144·16) = 48; share 1 → B (FiCoCo-V alone); share 0 → N (FiCoCo-L alone)
    assert.equal(visionSideTokens(576, 64, 0.5), 192);
    assert.equal(visionSideTokens(144, 16, 0.5), 48);
    assert.equal(visionSideTokens(576, 64, 1), 64);
    assert.equal(visionSideTokens(576, 64, 0), 576);
    const plan = planReduction('ficoco-vl', { tokens: 64 }, LLAVA_15);
    const removed = (prefix: string) => removedTokens(plan.steps.filter((s) => s.site.startsWith(prefix)));
    assert.equal(removed('vision:'), 576 - 192);
    assert.equal(removed('llm:'), 192 - 64);
    // FiCoCo-L alone on Vicuna-7B's 32 layers reduces in layers 5…31 (start 5/32)
    const sites = planReduction('ficoco-l', { tokens: 64 }, LLAVA_15).steps.map((s) => s.site);
    assert.equal(sites[0], 'llm:5');
    assert.equal(sites[sites.length - 1], 'llm:31');
  });
});

describe('an explicit per-layer schedule (schedule, visionSchedule, llmSchedule)', () => {
  const times = (n: number, share: number) => new Array<number>(n).fill(share).join(',');
  const removals = (method: string, budget: number, params: Record<string, unknown>) =>
    planReduction(method, { tokens: budget }, LLAVA_15, params).steps.map((step) => [step.site, step.remove]);

  test('empty, the default, is the even schedule, step for step', () => {
    for (const method of ['ficoco-v', 'ficoco-l'])
      assert.deepEqual(removals(method, 64, { schedule: '' }), removals(method, 64, {}), method);
    assert.deepEqual(
      removals('ficoco-vl', 64, { visionSchedule: '', llmSchedule: ' ' }),
      removals('ficoco-vl', 64, {}),
    );
  });

  test("shares that add up to the removal are used as given: the official code's r = 42 and r = 14", () => {
    const vision = Array.from({ length: 11 }, (_, i) => [`vision:${12 + i}`, 42]);
    assert.deepEqual(removals('ficoco-v', 114, { schedule: times(11, 42) }), vision);
    const llm = Array.from({ length: 27 }, (_, i) => [`llm:${5 + i}`, 14]);
    assert.deepEqual(removals('ficoco-l', 198, { schedule: times(27, 14) }), llm);
    // 576 → 192 in the encoder (√(576·64)), then 192 → 64 in the decoder.
    assert.deepEqual(removals('ficoco-vl', 64, { visionSchedule: times(8, 48), llmSchedule: times(8, 16) }), [
      ...vision.slice(0, 8).map(([site]) => [site, 48]),
      ...llm.slice(0, 8).map(([site]) => [site, 16]),
    ]);
  });

  test('other shares split any removal in proportion, in whole tokens by largest remainder', () => {
    // 512 as 3 : 2 : 1 is 256, 170.67, 85.33: the floors leave one token, for the largest remainder.
    assert.deepEqual(removals('ficoco-v', 64, { schedule: '3, 2, 1' }), [
      ['vision:12', 256],
      ['vision:13', 171],
      ['vision:14', 85],
    ]);
    // 448 over shares 0.5 : 0 : 0.25 : 0.25; the layer with share 0 has no step.
    assert.deepEqual(removals('ficoco-l', 128, { schedule: '.5,0,0.25,0.25' }), [
      ['llm:5', 224],
      ['llm:7', 112],
      ['llm:8', 112],
    ]);
    for (const budget of [1, 100, 575]) {
      const steps = planReduction('ficoco-v', { tokens: budget }, LLAVA_15, { schedule: '5,1,1,7' }).steps;
      assert.equal(removedTokens(steps), 576 - budget, `budget ${budget}`);
    }
  });

  test('a parameter is held as its numbers written plainly; --param schedule=3 arrives as a number', () => {
    assert.equal(resolveParams(ficocoV, { schedule: ' 42 ,42.0, 0.50 ' }).schedule, '42,42,0.5');
    assert.equal(resolveParams(ficocoV, { schedule: 3 }).schedule, '3');
    assert.deepEqual(removals('ficoco-v', 64, { schedule: 3 }), [['vision:12', 512]]);
  });

  test('a list that is not shares, or longer than the layers left, is refused in one line naming it', () => {
    const refusal = (method: string, params: Record<string, unknown>) => {
      try {
        planReduction(method, { tokens: 114 }, LLAVA_15, params);
      } catch (error) {
        assert.ok(error instanceof FicocoError && error.kind === 'reduction', String(error));
        assert.doesNotMatch(error.message, /\n/);
        return error.message;
      }
      assert.fail(`${JSON.stringify(params)} was accepted`);
    };
    const hint = /; give a share of 0 or more per reducing layer, separated by commas \(e\.g\. 3,2,1\)/;
    for (const [schedule, problem] of [
      ['3,-1,2', /^ficoco-v\.schedule is "3,-1,2": "-1" is negative/],
      ['3,two', /^ficoco-v\.schedule is "3,two": "two" is not a number/],
      ['1e3', /^ficoco-v\.schedule is "1e3": "1e3" is not a number/],
      ['3,,1', /^ficoco-v\.schedule is "3,,1": an entry is empty/],
      ['0,0', /^ficoco-v\.schedule is "0,0": every entry is 0, so no layer would remove a token/],
      ['1'.repeat(400), /^ficoco-v\.schedule is "1{199}… \(402 characters\): "1{199}… \(402 characters\) is too large/],
    ] as const) {
      const message = refusal('ficoco-v', { schedule });
      assert.match(message, problem);
      assert.match(message, hint);
    }
    assert.match(refusal('ficoco-v', { schedule: true }), /^ficoco-v\.schedule is true: not text/);
    assert.equal(
      refusal('ficoco-v', { schedule: times(12, 42) }),
      'ficoco-v.schedule has 12 shares, but this model reduces at most 11 layers from its start, layer 12 ' +
        '(12…22): give at most 11, or start earlier.',
    );
    assert.match(refusal('ficoco-l', { schedule: times(28, 1) }), /^ficoco-l\.schedule has 28 shares, .* 27 layers/);
    assert.match(refusal('ficoco-vl', { visionSchedule: times(12, 1) }), /^ficoco-vl\.visionSchedule has 12 shares/);
    assert.match(refusal('ficoco-vl', { llmSchedule: '-1' }), /^ficoco-vl\.llmSchedule is "-1": "-1" is negative/);
  });
});
