import { rowDot } from '../arrays';
import { Compress, SINK } from '../paradigm';
import { SiteView, TokenState, VisualSpan } from '../tokenState';

/**
 * DPC-kNN (density peaks with k nearest neighbours, as SparseVLM's cluster_and_merge) on a [n, n] distance matrix:
 * ρ_i = exp(−mean of d² to its k = clusters nearest, itself included), δ_i = min d_ij over denser j (max d if none),
 * centres = top-`clusters` ρ·δ, every point joins its nearest centre. Returns the members of each cluster (point
 * indices), in centre order.
 */
export function densityPeakClusters(distance: Float64Array, n: number, clusters: number): number[][] {
  const k = Math.max(1, Math.min(clusters, n));
  const density = new Float64Array(n);
  const sorted = new Float64Array(n);
  let farthest = -Infinity;
  for (let i = 0; i < n; i++) {
    sorted.set(distance.subarray(i * n, (i + 1) * n));
    sorted.sort();
    let squares = 0;
    for (let m = 0; m < k; m++) squares += sorted[m] * sorted[m];
    density[i] = Math.exp(-squares / k);
    farthest = Math.max(farthest, sorted[n - 1]);
  }
  // δ_i = min_{j denser} d_ij, denser = higher ρ or equal ρ and earlier.
  const parentDistance = new Float64Array(n).fill(farthest);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      if (density[j] > density[i] || (density[j] === density[i] && j < i))
        parentDistance[i] = Math.min(parentDistance[i], distance[i * n + j]);
    }
  }
  const indices = new Int32Array(n);
  for (let i = 0; i < n; i++) indices[i] = i;
  const centres = indices
    .sort((a, b) => parentDistance[b] * density[b] - parentDistance[a] * density[a] || a - b)
    .slice(0, k);
  const centreOf = new Int32Array(n).fill(-1);
  for (let m = 0; m < k; m++) centreOf[centres[m]] = m;
  const members: number[][] = Array.from({ length: k }, () => []);
  for (let i = 0; i < n; i++) {
    let nearest = centreOf[i];
    if (nearest < 0) {
      nearest = 0;
      for (let m = 1; m < k; m++) if (distance[i * n + centres[m]] < distance[i * n + centres[nearest]]) nearest = m;
    }
    members[nearest].push(i);
  }
  return members;
}

/** ‖h_t‖ of each of `tokens`' hidden states. */
export function hiddenNorms(view: TokenState, tokens: Int32Array): Float64Array {
  const { hidden, width } = view;
  return Float64Array.from(tokens, (token) => Math.sqrt(rowDot(hidden, width, token, token)));
}

/**
 * d_ij = ‖x_i − x_j‖/√D between the hidden states of sequence tokens `tokens`, from the engine's cosine:
 * ‖x_i − x_j‖² = ‖x_i‖² + ‖x_j‖² − 2‖x_i‖‖x_j‖cos_ij (clamped at 0, d_ii = 0).
 */
function hiddenDistances(view: SiteView, tokens: Int32Array): Float64Array {
  const cosine = view.hiddenCosine;
  if (!cosine) throw new Error(`recycling needs the hidden cosine at ${view.site}`);
  const n = tokens.length;
  const norms = hiddenNorms(view, tokens);
  const distance = new Float64Array(n * n);
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      const squared =
        norms[a] * norms[a] +
        norms[b] * norms[b] -
        2 * norms[a] * norms[b] * cosine[tokens[a] * view.count + tokens[b]];
      distance[a * n + b] = distance[b * n + a] = Math.sqrt(Math.max(0, squared) / view.width);
    }
  }
  return distance;
}

/**
 * Sources sent to SINK are recycled: per span they are clustered into `clusterCount(recycled)` groups, each group
 * becomes one new token x = mean of its members (size Σ m, position = its latest member's, placed in position order
 * inside the span, tokenPatch −1, owning its members' patches); the other sources are dropped.
 */
export function recycleIntoNewTokens(clusterCount: (recycled: number) => number): Compress<unknown> {
  return (view, split, correlation) => {
    const { count } = view;
    const leaving = new Uint8Array(count);
    const recycled = new Uint8Array(count);
    for (let k = 0; k < split.sources.length; k++) {
      leaving[split.sources[k]] = 1;
      for (let e = correlation.offsets[k]; e < correlation.offsets[k + 1]; e++)
        if (correlation.receivers[e] === SINK) recycled[split.sources[k]] = 1;
    }
    // The output in order as codes: t ≥ 0 is sequence token t kept, −1 − c is new token c; text as it was,
    // each span's kept tokens and new tokens sorted by position (stable).
    const order: number[] = [];
    const created: NewTokens = { hidden: [], sizes: [], positions: [], members: [] };
    const spanRanges = new Int32Array(2 * view.spans.length);
    let next = 0;
    view.spans.forEach((span, s) => {
      for (; next < span.start; next++) if (!leaving[next]) order.push(next);
      const inSpan: number[] = [];
      for (; next < span.start + span.count; next++) if (!leaving[next]) inSpan.push(next);
      const firstNew = created.hidden.length;
      recycleSpan(view, span, recycled, clusterCount, created);
      for (let c = firstNew; c < created.hidden.length; c++) inSpan.push(-1 - c);
      const positionOf = (code: number) => (code >= 0 ? view.positions[code] : created.positions[-1 - code]);
      inSpan.sort((a, b) => positionOf(a) - positionOf(b));
      spanRanges[2 * s] = order.length;
      spanRanges[2 * s + 1] = inSpan.length;
      for (const code of inSpan) order.push(code);
    });
    for (; next < count; next++) if (!leaving[next]) order.push(next);
    return assemble(view, order, created, spanRanges);
  };
}

/** New tokens as parallel lists: mean hidden state, size, position and member sequence indices. */
interface NewTokens {
  hidden: Float64Array[];
  sizes: number[];
  positions: number[];
  members: Int32Array[];
}

/** Clusters the span's recycled sources and appends one new token per cluster to `created`. */
function recycleSpan(
  view: SiteView,
  span: VisualSpan,
  recycled: Uint8Array,
  clusterCount: (recycled: number) => number,
  created: NewTokens,
): void {
  const { width } = view;
  const members: number[] = [];
  for (let t = span.start; t < span.start + span.count; t++) if (recycled[t]) members.push(t);
  if (members.length === 0) return;
  const tokens = Int32Array.from(members);
  for (const group of densityPeakClusters(hiddenDistances(view, tokens), tokens.length, clusterCount(tokens.length))) {
    const hidden = new Float64Array(width);
    let size = 0;
    let position = -Infinity;
    const groupTokens = new Int32Array(group.length);
    for (let g = 0; g < group.length; g++) {
      const t = (groupTokens[g] = tokens[group[g]]);
      const row = view.hidden.subarray(t * width, (t + 1) * width);
      for (let d = 0; d < width; d++) hidden[d] += row[d] / group.length;
      size += view.sizes[t];
      position = Math.max(position, view.positions[t]);
    }
    created.hidden.push(hidden);
    created.sizes.push(size);
    created.positions.push(position);
    created.members.push(groupTokens);
  }
}

/** Writes the output rows in `order` (codes as in recycleIntoNewTokens) with provenance carried to the new indices. */
function assemble(view: TokenState, order: number[], created: NewTokens, spanRanges: Int32Array): TokenState {
  const { width } = view;
  const count = order.length;
  const hidden = new Float32Array(count * width);
  const sizes = new Float32Array(count);
  const positions = new Int32Array(count);
  const newIndex = new Int32Array(view.count).fill(-1);
  for (let i = 0; i < count; i++) {
    const code = order[i];
    if (code >= 0) {
      hidden.set(view.hidden.subarray(code * width, (code + 1) * width), i * width);
      sizes[i] = view.sizes[code];
      positions[i] = view.positions[code];
      newIndex[code] = i;
    } else {
      const c = -1 - code;
      hidden.set(created.hidden[c], i * width);
      sizes[i] = created.sizes[c];
      positions[i] = created.positions[c];
      for (const member of created.members[c]) newIndex[member] = i;
    }
  }
  const spans = view.spans.map((span: VisualSpan, s): VisualSpan => {
    const start = spanRanges[2 * s];
    const spanCount = spanRanges[2 * s + 1];
    const tokenPatch = new Int32Array(spanCount);
    for (let i = 0; i < spanCount; i++)
      tokenPatch[i] = order[start + i] >= 0 ? span.tokenPatch[order[start + i] - span.start] : -1;
    const patchOwner = new Int32Array(span.patchOwner.length);
    for (let p = 0; p < patchOwner.length; p++)
      patchOwner[p] = span.patchOwner[p] < 0 ? -1 : newIndex[span.patchOwner[p]];
    return { start, count: spanCount, grid: span.grid, patchOwner, tokenPatch };
  });
  return { hidden, count, width, sizes, positions, spans };
}
