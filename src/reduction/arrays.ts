/** Small numeric helpers over typed arrays, shared by the stages. All math in float64, results float32. */

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

/** Row i · row j of a row-major [rows, width] matrix (four partial sums so the loop pipelines). */
export function rowDot(matrix: Float32Array, width: number, i: number, j: number): number {
  const a = i * width;
  const b = j * width;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let d = 0;
  for (; d < width - 3; d += 4) {
    s0 += matrix[a + d] * matrix[b + d];
    s1 += matrix[a + d + 1] * matrix[b + d + 1];
    s2 += matrix[a + d + 2] * matrix[b + d + 2];
    s3 += matrix[a + d + 3] * matrix[b + d + 3];
  }
  for (; d < width; d++) s0 += matrix[a + d] * matrix[b + d];
  return s0 + s1 + s2 + s3;
}

/** Σ values[from + t] for t < count (four partial sums so the loop pipelines). */
export function rangeSum(values: Float32Array, from: number, count: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let t = 0;
  for (; t < count - 3; t += 4) {
    s0 += values[from + t];
    s1 += values[from + t + 1];
    s2 += values[from + t + 2];
    s3 += values[from + t + 3];
  }
  for (; t < count; t++) s0 += values[from + t];
  return s0 + s1 + s2 + s3;
}

export function norm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

/**
 * cos(v, m_i) = v·m_i / (‖v‖‖m_i‖), 0 when either is zero, for row i of a row-major [rows, v.length] matrix, given
 * ‖v‖: one pass, no view of the row, each sum in dot's order (so the bits of a plain cosine).
 */
export function cosineToRow(v: Float64Array, vNorm: number, matrix: Float32Array, i: number): number {
  let product = 0;
  let squares = 0;
  for (let d = 0, from = i * v.length; d < v.length; d++) {
    product += v[d] * matrix[from + d];
    squares += matrix[from + d] * matrix[from + d];
  }
  const denominator = vNorm * Math.sqrt(squares);
  return denominator === 0 ? 0 : product / denominator;
}

/** Index of the first NaN in `values`, −1 for none; four values a test (a step checks ~10⁵ per call: 35 % faster). */
export function firstNaN(values: Float32Array): number {
  let i = 0;
  for (; i + 3 < values.length; i += 4) {
    const a = values[i];
    const b = values[i + 1];
    const c = values[i + 2];
    const d = values[i + 3];
    if (Number.isNaN(a) || Number.isNaN(b) || Number.isNaN(c) || Number.isNaN(d)) break;
  }
  for (; i < values.length; i++) if (Number.isNaN(values[i])) return i;
  return -1;
}

/** [from, length] of each stretch of `indices` whose values go up by one: positions in `indices`, in order. */
export function consecutiveRuns(indices: ArrayLike<number>): [from: number, length: number][] {
  const runs: [from: number, length: number][] = [];
  for (let from = 0; from < indices.length;) {
    let length = 1;
    while (from + length < indices.length && indices[from + length] === indices[from] + length) length++;
    runs.push([from, length]);
    from += length;
  }
  return runs;
}

/** The rows `keep` of a row-major matrix `width` wide, in that order; consecutive rows are copied as one. */
export function selectRows(matrix: Float32Array, width: number, keep: ArrayLike<number>): Float32Array {
  const out = new Float32Array(keep.length * width);
  for (const [from, length] of consecutiveRuns(keep))
    out.set(matrix.subarray(keep[from] * width, (keep[from] + length) * width), from * width);
  return out;
}

/** The rows and columns `keep` (ascending) of an n × n matrix; each row's consecutive kept columns as one copy. */
export function submatrix(matrix: Float32Array, n: number, keep: ArrayLike<number>): Float32Array {
  const size = keep.length;
  const out = new Float32Array(size * size);
  const runs = consecutiveRuns(keep);
  for (let i = 0; i < size; i++) {
    const start = keep[i] * n;
    for (const [from, length] of runs)
      out.set(matrix.subarray(start + keep[from], start + keep[from] + length), i * size + from);
  }
  return out;
}

/** Each row of a [count, width] matrix divided by max(‖row‖₂, 1e-12). */
export function unitRows(rows: Float32Array, count: number, width: number): Float32Array {
  const unit = new Float32Array(rows.length);
  for (let i = 0; i < count; i++) {
    let squares = 0;
    for (let d = 0; d < width; d++) squares += rows[i * width + d] ** 2;
    const scale = 1 / Math.max(Math.sqrt(squares), 1e-12);
    for (let d = 0; d < width; d++) unit[i * width + d] = rows[i * width + d] * scale;
  }
  return unit;
}

/** cos(x_i, x_j) of every pair of rows of a [count, width] matrix (what the engine computes in its graph). */
export function cosineMatrix(rows: Float32Array, count: number, width: number): Float32Array {
  const unit = unitRows(rows, count, width);
  const cosine = new Float32Array(count * count);
  for (let i = 0; i < count; i++) {
    for (let j = i; j < count; j++) {
      let sum = 0;
      for (let d = 0; d < width; d++) sum += unit[i * width + d] * unit[j * width + d];
      cosine[i * count + j] = sum;
      cosine[j * count + i] = sum;
    }
  }
  return cosine;
}

/** Columns of B one pass of `matmul` works over: B's rows over them stay in the CPU's cache (8 bytes a value). */
const MATMUL_BLOCK_COLUMNS = 1024;

/**
 * C = A·B for row-major A [rows, inner] and B [inner, cols], skipping A_ik = 0 (an infinite B_kj there adds nothing).
 * Four rows of B go into a block of C's row at once, which reads and writes that row a quarter as often.
 */
export function matmul(a: Float64Array, b: Float64Array, rows: number, inner: number, cols: number): Float64Array {
  const product = new Float64Array(rows * cols);
  const nonzero = Array.from({ length: rows }, (_, i) => {
    const ks: number[] = [];
    for (let k = 0; k < inner; k++) if (a[i * inner + k] !== 0) ks.push(k);
    return ks;
  });
  for (let start = 0; start < cols; start += MATMUL_BLOCK_COLUMNS) {
    const end = Math.min(cols, start + MATMUL_BLOCK_COLUMNS);
    for (let i = 0; i < rows; i++) {
      const ks = nonzero[i];
      const out = i * cols;
      const from = i * inner;
      let n = 0;
      for (; n + 3 < ks.length; n += 4) {
        const [f0, f1, f2, f3] = [a[from + ks[n]], a[from + ks[n + 1]], a[from + ks[n + 2]], a[from + ks[n + 3]]];
        const [b0, b1, b2, b3] = [ks[n] * cols, ks[n + 1] * cols, ks[n + 2] * cols, ks[n + 3] * cols];
        for (let j = start; j < end; j++)
          product[out + j] += f0 * b[b0 + j] + f1 * b[b1 + j] + f2 * b[b2 + j] + f3 * b[b3 + j];
      }
      for (; n < ks.length; n++) {
        const factor = a[from + ks[n]];
        for (let j = start, row = ks[n] * cols; j < end; j++) product[out + j] += factor * b[row + j];
      }
    }
  }
  return product;
}

/** x / max(‖x‖₂, 1e-12), as torch.nn.functional.normalize */
export function l2Normalize(values: Float64Array): Float64Array {
  const length = Math.max(norm(values), 1e-12);
  const unit = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) unit[i] = values[i] / length;
  return unit;
}

/** The ε-quantile with linear interpolation between order statistics (numpy/torch "linear"), in O(n) by selection. */
export function quantileLinear(values: ArrayLike<number>, epsilon: number): number {
  const work = Float64Array.from(values);
  const position = epsilon * (work.length - 1);
  const lower = Math.floor(position);
  const below = selectNth(work, lower);
  if (lower + 1 >= work.length || position === lower) return below;
  // After selection everything right of `lower` is ≥ it; the next order statistic is their minimum.
  let above = Infinity;
  for (let i = lower + 1; i < work.length; i++) above = Math.min(above, work[i]);
  return below + (position - lower) * (above - below);
}

/** Rearranges `values` so index n holds the n-th smallest (Hoare's quickselect) and returns it. */
function selectNth(values: Float64Array, n: number): number {
  let left = 0;
  let right = values.length - 1;
  while (left < right) {
    const pivot = values[(left + right) >> 1];
    let i = left;
    let j = right;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        [values[i], values[j]] = [values[j], values[i]];
        i++;
        j--;
      }
    }
    if (n <= j) right = j;
    else if (n >= i) left = i;
    else break;
  }
  return values[n];
}

/** Indices of the `k` largest scores, ties to the smaller index, in descending score order. */
export function topIndices(scores: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: scores.length }, (_, i) => i)
    .sort((a, b) => scores[b] - scores[a] || a - b)
    .slice(0, Math.max(0, k));
}

/** exp(x_i − max) / Σ exp(x − max) */
export function softmax(values: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) max = Math.max(max, values[i]);
  const exps = Float64Array.from(values, (v) => Math.exp(v - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

/** Sorted ascending copy as Int32Array. */
export function sortedIndices(indices: ArrayLike<number>): Int32Array {
  return Int32Array.from(indices).sort();
}
