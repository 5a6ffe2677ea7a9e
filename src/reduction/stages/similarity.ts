import { SiteView } from '../tokenState';

/**
 * cos(k̄_i, k̄_j) of the site's head-averaged keys for i in `rows`, j in `columns` (sequence indices), as a [rows,
 * columns]
 * matrix read from the engine's key cosine [keyCount, keyCount].
 */
export function keyCosines(view: SiteView, rows: ArrayLike<number>, columns: ArrayLike<number>): Float32Array {
  const cosine = view.keyCosine;
  if (!cosine) throw new Error(`the key cosine is not available at ${view.site}; the step must ask for it`);
  const n = columns.length;
  const block = new Float32Array(rows.length * n);
  for (let r = 0; r < rows.length; r++) {
    const from = rows[r] * view.keyCount;
    for (let c = 0; c < n; c++) block[r * n + c] = cosine[from + columns[c]];
  }
  return block;
}

/** Index of the largest of values[from + t·stride] for t < count, ties to the earlier. */
export function argmaxStrided(values: Float32Array, from: number, stride: number, count: number): number {
  let best = 0;
  for (let t = 1; t < count; t++) if (values[from + t * stride] > values[from + best * stride]) best = t;
  return best;
}
