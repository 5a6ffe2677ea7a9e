import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { seededRandom } from '../../src/common/random';
import { Method, ModelShape } from '../../src/reduction/method';
import { ficocoL } from '../../src/reduction/methods/ficocoL';
import { ficocoV } from '../../src/reduction/methods/ficocoV';
import { StepRecord, runStep } from '../../src/reduction/paradigm';
import { resolveParams } from '../../src/reduction/registry';
import { HookSite, SiteView, VisualSpan } from '../../src/reduction/tokenState';

/**
 * One FiCoCo step against a literal transcription of clean reference algorithms (the paper's FiCoCo-V and
 * FiCoCo-L, arXiv 2411.17686v4, without the official code's quirks), written without the library's helpers:
 * sort-based quantile, plain loops, nested arrays. Random logits on a 1/8 grid make ties common, so the tie rules
 * (smaller position first) are exercised too.
 */

type Matrix = number[][];

interface Outcome {
  sources: number[];
  /** per source (ascending), its receivers as sequence indices */
  receivers: number[][];
  /** the tokens left after the step, in order */
  hidden: Matrix;
}

/** numpy/torch "linear" quantile: sort, then interpolate between the order statistics around ε(M − 1). */
function quantile(values: number[], epsilon: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const position = epsilon * (sorted.length - 1);
  const lower = Math.floor(position);
  const upper = Math.min(lower + 1, sorted.length - 1);
  return sorted[lower] + (position - lower) * (sorted[upper] - sorted[lower]);
}

/** J_i: indices above τ (strict '>' or '≥'), else the first argmax; α = softmax of the row over J_i. */
function receiversOf(row: number[], epsilon: number, strict: boolean): { picked: number[]; alpha: number[] } {
  const tau = quantile(row, epsilon);
  let picked = row.flatMap((v, k) => ((strict ? v > tau : v >= tau) ? [k] : []));
  if (picked.length === 0) picked = [row.indexOf(Math.max(...row))];
  const top = Math.max(...picked.map((k) => row[k]));
  const exps = picked.map((k) => Math.exp(row[k] - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return { picked, alpha: exps.map((e) => e / total) };
}

/** X_j ← (X_j + Σ α X_i)/(1 + Σ α) (normalised) or X_j + Σ α X_i, over the receivers of every source. */
function compress(
  hidden: Matrix,
  sources: number[],
  receivers: number[][],
  alphas: number[][],
  normalize: boolean,
): Matrix {
  const out = hidden.map((x) => [...x]);
  const received = new Map<number, number>();
  sources.forEach((i, s) =>
    receivers[s].forEach((j, e) => {
      for (let d = 0; d < out[j].length; d++) out[j][d] += alphas[s][e] * hidden[i][d];
      received.set(j, (received.get(j) ?? 0) + alphas[s][e]);
    }),
  );
  if (normalize) for (const [j, total] of received) out[j] = out[j].map((v) => v / (1 + total));
  return out.filter((_, t) => !sources.includes(t));
}

/** §2.10, one layer: A and H over [CLS] + the alive patches, `pos` their raster positions on a rows × cols grid. */
function referenceV(
  A: Matrix,
  H: Matrix,
  pos: number[],
  grid: { rows: number; cols: number },
  r: number,
  { epsilon, strict }: { epsilon: number; strict: boolean },
): Outcome {
  const n = pos.length;
  const c = pos.map((_, i) => A[0][1 + i]);
  const p = pos.map((_, i) => A[1 + i].slice(1).reduce((a, b) => a + b, 0) / n);
  const unit = (x: number[]) => {
    const length = Math.max(Math.sqrt(x.reduce((a, v) => a + v * v, 0)), 1e-12);
    return x.map((v) => v / length);
  };
  const [pHat, cHat] = [unit(p), unit(c)];
  const s = pos.map((_, i) => 0.65 * pHat[i] - 0.35 * cHat[i]);
  // local penalty: 2×2 windows over the original grid, the argmax of each (ties: smallest pos) boosted
  for (let wr = 0; wr < Math.floor(grid.rows / 2); wr++)
    for (let wc = 0; wc < Math.floor(grid.cols / 2); wc++) {
      let m = -1;
      pos.forEach((q, i) => {
        const inside = Math.floor(Math.floor(q / grid.cols) / 2) === wr && Math.floor((q % grid.cols) / 2) === wc;
        if (inside && (m < 0 || s[i] > s[m] || (s[i] === s[m] && q < pos[m]))) m = i;
      });
      if (m >= 0) s[m] = s[m] > 0 ? s[m] * 2 : s[m] / 2;
    }
  const order = pos.map((_, i) => i).sort((a, b) => s[b] - s[a] || pos[a] - pos[b]);
  const S = order.slice(0, r).sort((a, b) => a - b);
  const T = pos.map((_, i) => i).filter((i) => !S.includes(i));
  const receivers: number[][] = [];
  const alphas: number[][] = [];
  for (const i of S) {
    const { picked, alpha } = receiversOf(
      T.map((j) => A[1 + i][1 + j]),
      epsilon,
      strict,
    );
    receivers.push(picked.map((k) => 1 + T[k]));
    alphas.push(alpha);
  }
  const sources = S.map((i) => 1 + i);
  return { sources, receivers, hidden: compress(H, sources, receivers, alphas, true) };
}

/** §3.8, one layer: the visual span [v0, v0 + n), the text set everything after it. */
function referenceL(
  A: Matrix,
  H: Matrix,
  v0: number,
  n: number,
  r: number,
  o: { epsilon: number; strict: boolean; mean: boolean; inverseM: boolean; normalize: boolean },
): Outcome {
  const V = Array.from({ length: n }, (_, i) => v0 + i);
  const text = Array.from({ length: A.length - v0 - n }, (_, k) => v0 + n + k);
  const M = text.length;
  const s = V.map((i) => {
    const vv = V.reduce((sum, j) => sum + A[i][j], 0) / (o.mean ? n : 1);
    const vt = M === 0 ? 0 : text.reduce((sum, k) => sum + A[i][k], 0) / M;
    return 0.6 * vv - 0.4 * vt;
  });
  const order = V.map((_, t) => t).sort((a, b) => s[b] - s[a] || a - b);
  const sources = order
    .slice(0, r)
    .map((t) => V[t])
    .sort((a, b) => a - b);
  const T = V.filter((j) => !sources.includes(j));
  const scale = M === 0 ? 0 : o.inverseM ? 1 / M : 1;
  const receivers: number[][] = [];
  const alphas: number[][] = [];
  for (const i of sources) {
    const row = T.map((j) => 0.6 * A[i][j] + 0.4 * scale * text.reduce((sum, k) => sum + A[i][k] * A[k][j], 0));
    const { picked, alpha } = receiversOf(row, o.epsilon, o.strict);
    receivers.push(picked.map((k) => T[k]));
    alphas.push(alpha);
  }
  return { sources, receivers, hidden: compress(H, sources, receivers, alphas, o.normalize) };
}

function makeView(site: HookSite, A: Matrix, H: Matrix, span: VisualSpan, hasClassToken: boolean): SiteView {
  const count = A.length;
  return {
    site,
    hidden: Float32Array.from(H.flat()),
    count,
    width: H[0].length,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [span],
    attention: Float32Array.from(A.flat()),
    keyCount: count,
    hasClassToken,
  };
}

function spanOf(start: number, grid: { rows: number; cols: number }, patches: number[]): VisualSpan {
  const patchOwner = new Int32Array(grid.rows * grid.cols).fill(-1);
  patches.forEach((p, i) => (patchOwner[p] = start + i));
  return { start, count: patches.length, grid, patchOwner, tokenPatch: Int32Array.from(patches) };
}

/** Runs the method's first step with `given` parameters and compares it with the reference outcome. */
function compare(
  method: Method,
  shape: ModelShape,
  view: SiteView,
  remove: number,
  given: Record<string, unknown>,
  expected: Outcome,
  label: string,
): void {
  const [first] = method.plan(shape, 1, resolveParams(method, given));
  const log: StepRecord[] = [];
  const out = runStep({ ...first, remove }, view, log);
  const { split, correlation } = log[0];
  assert.deepEqual(Array.from(split.sources), expected.sources, `${label}: sources`);
  const receivers = expected.sources.map((_, k) =>
    Array.from(correlation.receivers.subarray(correlation.offsets[k], correlation.offsets[k + 1])),
  );
  assert.deepEqual(receivers, expected.receivers, `${label}: receivers`);
  const flat = expected.hidden.flat();
  assert.equal(out.hidden.length, flat.length, `${label}: token count`);
  flat.forEach((v, d) => assert.ok(Math.abs(out.hidden[d] - v) <= 1e-5 * (1 + Math.abs(v)), `${label}: hidden[${d}]`));
}

/** Random logits on a 1/8 grid in [−3, 3] (many ties), random hidden rows. */
function randomMatrices(random: () => number, count: number, width: number): { A: Matrix; H: Matrix } {
  const A = Array.from({ length: count }, () =>
    Array.from({ length: count }, () => Math.round((random() * 6 - 3) * 8) / 8),
  );
  const H = Array.from({ length: count }, () => Array.from({ length: width }, () => random() * 10 - 5));
  return { A, H };
}

describe('FiCoCo steps equal the spec reference algorithms on random inputs', () => {
  test('FiCoCo-V (§2.10): scores, local penalty, ties, adaptive receivers and the self-preserving merge', () => {
    for (let trial = 0; trial < 120; trial++) {
      const random = seededRandom(100 + trial);
      const grid = { rows: 2 + Math.floor(random() * 5), cols: 2 + Math.floor(random() * 5) };
      // a later layer: only some patches are still alive
      const alive = Array.from({ length: grid.rows * grid.cols }, (_, p) => p).filter(() => random() < 0.8);
      if (alive.length < 3) continue;
      const { A, H } = randomMatrices(random, alive.length + 1, 3);
      const remove = 1 + Math.floor(random() * (alive.length - 2));
      const options = { epsilon: [0.998, 0.5, 0.7, 0.9][trial % 4], strict: trial % 3 !== 0 };
      const shape: ModelShape = {
        visionLayers: 4,
        textLayers: 4,
        visualTokens: grid.rows * grid.cols,
        grid,
        hasClassToken: true,
      };
      compare(
        ficocoV,
        shape,
        makeView('vision:0', A, H, spanOf(1, grid, alive), true),
        remove,
        { epsilon: options.epsilon, strictThreshold: options.strict },
        referenceV(A, H, alive, grid, remove, options),
        `trial ${trial}`,
      );
    }
  });

  test('FiCoCo-L (§3.8): task-aware filter, text-bridged correlation, both aggregates, scales and merges', () => {
    for (let trial = 0; trial < 120; trial++) {
      const random = seededRandom(900 + trial);
      const before = Math.floor(random() * 3);
      const grid = { rows: 2, cols: 2 + Math.floor(random() * 4) };
      const n = grid.rows * grid.cols;
      const after = Math.floor(random() * 5);
      const { A, H } = randomMatrices(random, before + n + after, 2);
      const remove = 1 + Math.floor(random() * (n - 2));
      const o = {
        epsilon: [0.998, 0.5, 0.7][trial % 3],
        strict: trial % 2 === 0,
        mean: trial % 5 === 0,
        inverseM: trial % 7 === 0,
        normalize: trial % 4 !== 0,
      };
      const shape: ModelShape = { visionLayers: 4, textLayers: 4, visualTokens: n, grid, hasClassToken: false };
      const span = spanOf(
        before,
        grid,
        Array.from({ length: n }, (_, p) => p),
      );
      compare(
        ficocoL,
        shape,
        makeView('llm:1', A, H, span, false),
        remove,
        {
          epsilon: o.epsilon,
          strictThreshold: o.strict,
          vvAggregate: o.mean ? 'mean' : 'sum',
          indirectScale: o.inverseM ? 'inverseM' : 'one',
          compress: o.normalize ? 'normalized' : 'sum',
        },
        referenceL(A, H, before, n, remove, o),
        `trial ${trial}`,
      );
    }
  });
});
