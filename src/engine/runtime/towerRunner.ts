import type * as ort from 'onnxruntime-node';
import type { AttentionExposure } from '../graph/attention';
import { SegmentGraph, Tower, buildSegment } from '../graph/segment';
import { SessionFactory } from './provider';

/** A built, loaded segment: blocks [start, end) of a tower, with the hook site that follows it, if any. */
export interface Segment {
  start: number;
  end: number;
  /** the hook site after the segment's last block, when a hook runs there */
  site?: string;
  graph: Omit<SegmentGraph, 'bytes'>;
  session: ort.InferenceSession;
}

/**
 * Cuts a tower into segments at the hook sites in use and keeps their sessions. Without hooks a tower
 * is one segment. Sessions no plan uses any more are released, so weights are loaded once per plan.
 */
export class TowerRunner {
  private readonly sessions = new Map<string, Promise<Segment>>();

  constructor(readonly tower: Tower, private readonly factory: SessionFactory) {}

  /** Segments for hooks at `sites` (site → what the hook needs); unknown sites are an error. `sizeBias`: attention adds log(size) per key. */
  async segments(sites: ReadonlyMap<string, AttentionExposure>, sizeBias = false): Promise<Segment[]> {
    const cuts: { end: number; site: string; expose: AttentionExposure }[] = [];
    for (const [site, expose] of sites) {
      const index = this.tower.blocks.findIndex((block) => block.site === site);
      if (index < 0) throw new Error(`the ${this.tower.name} tower has no hook site ${site}`);
      cuts.push({ end: index + 1, site, expose });
    }
    cuts.sort((a, b) => a.end - b.end);
    const ranges: { start: number; end: number; site?: string; expose: AttentionExposure }[] = [];
    let start = 0;
    for (const cut of cuts) {
      ranges.push({ start, end: cut.end, site: cut.site, expose: cut.expose });
      start = cut.end;
    }
    if (start < this.tower.blocks.length) ranges.push({ start, end: this.tower.blocks.length, expose: {} });
    const keys = ranges.map((r) => segmentKey(r.start, r.end, r.expose, sizeBias));
    this.releaseExcept(new Set(keys));
    return Promise.all(ranges.map((range, i) => this.load(keys[i], range.start, range.end, range.site, range.expose, sizeBias)));
  }

  async release(): Promise<void> {
    this.releaseExcept(new Set());
  }

  private load(key: string, start: number, end: number, site: string | undefined, expose: AttentionExposure, sizeBias: boolean): Promise<Segment> {
    let loading = this.sessions.get(key);
    if (!loading) {
      loading = (async () => {
        let graph: SegmentGraph | undefined;
        const session = await this.factory.create((computeType) => {
          graph = buildSegment(this.tower, { start, end, computeType, expose, sizeBias, weightsFolder: this.factory.weightsFolder });
          return graph.bytes;
        });
        const { bytes: _bytes, ...meta } = graph!;
        return { start, end, site, graph: meta, session };
      })();
      this.sessions.set(key, loading);
      loading.catch(() => this.sessions.delete(key));
    }
    return loading.then((segment) => ({ ...segment, site }));
  }

  private releaseExcept(keep: Set<string>): void {
    for (const [key, loading] of this.sessions) {
      if (keep.has(key)) continue;
      this.sessions.delete(key);
      loading.then((segment) => segment.session.release()).catch(() => undefined);
    }
  }
}

function segmentKey(start: number, end: number, expose: AttentionExposure, sizeBias: boolean): string {
  return `${start}-${end}-${expose.attention ?? ''}-${expose.keys ? 'k' : ''}-${expose.hiddenCosine ? 'cos' : ''}-${expose.keyCosine ? 'kcos' : ''}-${sizeBias ? 'sized' : ''}`;
}
