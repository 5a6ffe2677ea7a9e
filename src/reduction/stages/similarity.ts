import { SiteView } from '../tokenState';

/** k̂_t = k̄_t / max(‖k̄_t‖, 1e-12) of the site's head-averaged keys, for every key, rows of a [keyCount, headDim] matrix. */
export function unitKeys(view: SiteView): { unit: Float64Array; headDim: number } {
  const keys = view.meanKeys;
  if (!keys) throw new Error(`keys are not available at ${view.site}; the step must ask for them`);
  const headDim = keys.length / view.keyCount;
  const unit = new Float64Array(keys.length);
  for (let from = 0; from < keys.length; from += headDim) {
    let squares = 0;
    for (let d = 0; d < headDim; d++) squares += keys[from + d] * keys[from + d];
    const length = Math.max(Math.sqrt(squares), 1e-12);
    for (let d = 0; d < headDim; d++) unit[from + d] = keys[from + d] / length;
  }
  return { unit, headDim };
}

/**
 * k̂_i·k̂_j (the key cosine) for i in `rows`, j in `columns` (rows of `unit`: sequence indices for unitKeys), as a [rows, columns] matrix.
 * Two rows × four columns per pass so eight dot products run side by side (each still summed in order).
 */
export function keyCosines({ unit, headDim }: { unit: Float64Array; headDim: number }, rows: ArrayLike<number>, columns: ArrayLike<number>): Float64Array {
  const n = columns.length;
  const cosines = new Float64Array(rows.length * n);
  // Past the end a block repeats the last row or column; those products are not stored.
  const start = (list: ArrayLike<number>, i: number) => list[Math.min(i, list.length - 1)] * headDim;
  for (let i = 0; i < rows.length; i += 2) {
    const x = start(rows, i);
    const y = start(rows, i + 1);
    for (let j = 0; j < n; j += 4) {
      const m0 = start(columns, j), m1 = start(columns, j + 1), m2 = start(columns, j + 2), m3 = start(columns, j + 3);
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
      for (let d = 0; d < headDim; d++) {
        const ax = unit[x + d], ay = unit[y + d];
        const b0 = unit[m0 + d], b1 = unit[m1 + d], b2 = unit[m2 + d], b3 = unit[m3 + d];
        s0 += ax * b0; s1 += ax * b1; s2 += ax * b2; s3 += ax * b3;
        t0 += ay * b0; t1 += ay * b1; t2 += ay * b2; t3 += ay * b3;
      }
      const r0 = i * n + j;
      const r1 = r0 + n;
      if (i + 1 < rows.length && j + 3 < n) {
        (cosines[r0] = s0), (cosines[r0 + 1] = s1), (cosines[r0 + 2] = s2), (cosines[r0 + 3] = s3);
        (cosines[r1] = t0), (cosines[r1 + 1] = t1), (cosines[r1 + 2] = t2), (cosines[r1 + 3] = t3);
      } else {
        [s0, s1, s2, s3].forEach((value, c) => j + c < n && (cosines[r0 + c] = value));
        if (i + 1 < rows.length) [t0, t1, t2, t3].forEach((value, c) => j + c < n && (cosines[r1 + c] = value));
      }
    }
  }
  return cosines;
}

/** Index of the largest of values[from + t·stride] for t < count, ties to the earlier. */
export function argmaxStrided(values: Float64Array, from: number, stride: number, count: number): number {
  let best = 0;
  for (let t = 1; t < count; t++) if (values[from + t * stride] > values[from + best * stride]) best = t;
  return best;
}
