import { Compress, SINK } from '../paradigm';
import { TokenState, VisualSpan } from '../tokenState';
import { keptIndices } from './compress';

/**
 * DPC-kNN (density peaks with k nearest neighbours, as SparseVLM's cluster_and_merge): d_ij = ‖x_i − x_j‖/√D,
 * ρ_i = exp(−mean of d² to its k = clusters nearest), δ_i = min d_ij over denser j (max d if none), centres = top-`clusters` ρ·δ,
 * every point joins its nearest centre. Returns the members of each cluster (indices into `points`), in centre order.
 */
export function densityPeakClusters(points: Float32Array[], clusters: number): number[][] {
  const n = points.length;
  const k = Math.max(1, Math.min(clusters, n));
  const distance = points.map((a) => points.map((b) => Math.sqrt(a.reduce((sum, v, d) => sum + (v - b[d]) ** 2, 0) / a.length)));
  const density = distance.map((row) => Math.exp(-row.slice().sort((x, y) => x - y).slice(0, k).reduce((sum, d) => sum + d * d, 0) / k));
  const farthest = Math.max(...distance.map((row) => Math.max(...row)));
  const isDenser = (j: number, i: number) => density[j] > density[i] || (density[j] === density[i] && j < i);
  const parentDistance = distance.map((row, i) => row.reduce((nearest, d, j) => (isDenser(j, i) ? Math.min(nearest, d) : nearest), farthest));
  const centres = Array.from({ length: n }, (_, i) => i)
    .sort((a, b) => parentDistance[b] * density[b] - parentDistance[a] * density[a] || a - b)
    .slice(0, k);
  const members: number[][] = centres.map(() => []);
  for (let i = 0; i < n; i++) {
    const own = centres.indexOf(i);
    const nearest = own >= 0 ? own : centres.reduce((best, c, m) => (distance[i][c] < distance[i][centres[best]] ? m : best), 0);
    members[nearest].push(i);
  }
  return members;
}

interface NewToken {
  hidden: Float64Array;
  size: number;
  position: number;
  /** sequence indices (in the view) of the sources it stands for */
  members: number[];
}

/**
 * Sources sent to SINK are recycled: per span they are clustered into `clusterCount(recycled)` groups, each group
 * becomes one new token x = mean of its members (size Σ m, position = its latest member's, placed in position order
 * inside the span, tokenPatch −1, owning its members' patches); the other sources are dropped.
 */
export function recycleIntoNewTokens(clusterCount: (recycled: number) => number): Compress<unknown> {
  return (view, split, correlation) => {
    const { width } = view;
    const recycled = new Set<number>();
    split.sources.forEach((source, k) => {
      for (let e = correlation.offsets[k]; e < correlation.offsets[k + 1]; e++) if (correlation.receivers[e] === SINK) recycled.add(source);
    });
    const kept = Array.from(keptIndices(view, split));
    const newTokensOf = view.spans.map((span) => {
      const members = Array.from(split.sources).filter((s) => recycled.has(s) && s >= span.start && s < span.start + span.count);
      if (members.length === 0) return [];
      const groups = densityPeakClusters(members.map((s) => view.hidden.subarray(s * width, (s + 1) * width)), clusterCount(members.length));
      return groups.map((group): NewToken => {
        const tokens = group.map((g) => members[g]);
        const hidden = new Float64Array(width);
        for (const t of tokens) for (let d = 0; d < width; d++) hidden[d] += view.hidden[t * width + d] / tokens.length;
        return { hidden, size: tokens.reduce((sum, t) => sum + view.sizes[t], 0), position: Math.max(...tokens.map((t) => view.positions[t])), members: tokens };
      });
    });
    // The output in order: text as it was, each span's kept tokens and new tokens sorted by position.
    type Entry = { from: number } | { created: NewToken };
    const entries: Entry[] = [];
    const spanRanges: { start: number; count: number }[] = [];
    let cursor = 0;
    view.spans.forEach((span, s) => {
      while (cursor < kept.length && kept[cursor] < span.start) entries.push({ from: kept[cursor++] });
      const inSpan: Entry[] = [];
      while (cursor < kept.length && kept[cursor] < span.start + span.count) inSpan.push({ from: kept[cursor++] });
      inSpan.push(...newTokensOf[s].map((created) => ({ created })));
      const positionOf = (entry: Entry) => ('from' in entry ? view.positions[entry.from] : entry.created.position);
      inSpan.sort((a, b) => positionOf(a) - positionOf(b));
      spanRanges.push({ start: entries.length, count: inSpan.length });
      entries.push(...inSpan);
    });
    while (cursor < kept.length) entries.push({ from: kept[cursor++] });
    return assemble(view, entries, spanRanges);
  };
}

function assemble(view: TokenState, entries: ({ from: number } | { created: NewToken })[], spanRanges: { start: number; count: number }[]): TokenState {
  const { width } = view;
  const count = entries.length;
  const hidden = new Float32Array(count * width);
  const sizes = new Float32Array(count);
  const positions = new Int32Array(count);
  const newIndex = new Int32Array(view.count).fill(-1);
  entries.forEach((entry, i) => {
    if ('from' in entry) {
      hidden.set(view.hidden.subarray(entry.from * width, (entry.from + 1) * width), i * width);
      sizes[i] = view.sizes[entry.from];
      positions[i] = view.positions[entry.from];
      newIndex[entry.from] = i;
    } else {
      hidden.set(entry.created.hidden, i * width);
      sizes[i] = entry.created.size;
      positions[i] = entry.created.position;
      for (const member of entry.created.members) newIndex[member] = i;
    }
  });
  const spans = view.spans.map((span: VisualSpan, s): VisualSpan => {
    const { start, count: spanCount } = spanRanges[s];
    const tokenPatch = Int32Array.from({ length: spanCount }, (_, i) => {
      const entry = entries[start + i];
      return 'from' in entry ? span.tokenPatch[entry.from - span.start] : -1;
    });
    return { start, count: spanCount, grid: span.grid, patchOwner: span.patchOwner.map((owner) => (owner < 0 ? -1 : newIndex[owner])), tokenPatch };
  });
  return { hidden, count, width, sizes, positions, spans };
}
