import type * as ort from 'onnxruntime-node';
import type { AttentionNeeds } from '../../reduction/tokenState';
import { SegmentGraph, SegmentSpec, Tower, buildSegment } from '../graph/segment';
import { SessionFactory, SessionWorkingSet } from './provider';

/** A built, loaded segment: blocks [start, end) of a tower, with the hook site that follows it, if any. */
export interface Segment {
  start: number;
  end: number;
  /** the hook site after the segment's last block, when a hook runs there */
  site?: string;
  graph: Omit<SegmentGraph, 'bytes'>;
  session: ort.InferenceSession;
  /**
   * the longest prompt the session has run: its memory arena holds that run's working set (ONNX Runtime grows an
   * arena to a session's largest run and keeps it)
   */
  arena: { promptTokens: number };
}

/**
 * Cuts a tower into segments at the hook sites in use and keeps their sessions. Without hooks a tower is one
 * segment. The sessions of two plans stay loaded — the whole tower (unreduced) and the latest plan with hooks, which
 * a speedup measurement alternates — and those of other plans are released: each session keeps a memory arena, and a
 * decoder cut at twenty hooks holds gigabytes of them at a long prompt.
 */
export class TowerRunner {
  private readonly sessions = new Map<string, Promise<Segment>>();
  /** the segment keys of the latest plan asked for other than the whole tower */
  private latestCut: string[] = [];

  /**
   * `takesPrompt`: the tower reads the prompt and then one token at a time (the decoder); a vision tower's segments
   * take one image pass.
   */
  constructor(
    readonly tower: Tower,
    private readonly factory: SessionFactory,
    private readonly takesPrompt = false,
  ) {}

  /**
   * Segments for hooks at `sites` (site → what the hook needs); unknown sites are an error. When a hook asks for
   * proportional attention, every segment is built with it (sizes are all 1 until the first merge, so it is exact).
   */
  async segments(sites: ReadonlyMap<string, AttentionNeeds>): Promise<Segment[]> {
    const proportionalAttention = [...sites.values()].some((needs) => needs.proportionalAttention === true);
    const cuts: { end: number; site: string; expose: AttentionNeeds }[] = [];
    for (const [site, expose] of sites) {
      const index = this.tower.blocks.findIndex((block) => block.site === site);
      if (index < 0) throw new Error(`the ${this.tower.name} tower has no hook site ${site}`);
      cuts.push({ end: index + 1, site, expose });
    }
    cuts.sort((a, b) => a.end - b.end);
    const ranges: { start: number; end: number; site?: string; expose: AttentionNeeds }[] = [];
    let start = 0;
    for (const cut of cuts) {
      ranges.push({ start, end: cut.end, site: cut.site, expose: cut.expose });
      start = cut.end;
    }
    if (start < this.tower.blocks.length) ranges.push({ start, end: this.tower.blocks.length, expose: {} });
    const keys = ranges.map((r) => segmentKey(r.start, r.end, r.expose, proportionalAttention));
    const whole = segmentKey(0, this.tower.blocks.length, {}, false);
    if (keys.join() !== whole) this.latestCut = keys;
    this.releaseExcept(new Set([whole, ...this.latestCut]));
    // A decoder in one piece is the only session a decode step runs at length.
    const backToBack = this.takesPrompt && ranges.length === 1;
    return Promise.all(
      ranges.map((range, i) =>
        this.load(
          keys[i],
          { start: range.start, end: range.end, expose: range.expose, proportionalAttention },
          range.site,
          // After a hook, a vision segment takes what the hook left: a count that changes from pass to pass.
          { backToBack, shapesVary: !this.takesPrompt && range.start > 0 },
        ),
      ),
    );
  }

  async release(): Promise<void> {
    this.latestCut = [];
    this.releaseExcept(new Set());
  }

  private load(
    key: string,
    spec: Omit<SegmentSpec, 'computeType' | 'weightsFolder'>,
    site: string | undefined,
    workingSet: SessionWorkingSet,
  ): Promise<Segment> {
    let loading = this.sessions.get(key);
    if (!loading) {
      loading = (async () => {
        let graph: SegmentGraph | undefined;
        const session = await this.factory.create((computeType) => {
          graph = buildSegment(this.tower, { ...spec, computeType, weightsFolder: this.factory.weightsFolder });
          return graph.bytes;
        }, workingSet);
        const { bytes: _bytes, ...meta } = graph!;
        return { start: spec.start, end: spec.end, site, graph: meta, session, arena: { promptTokens: 0 } };
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

function segmentKey(start: number, end: number, expose: AttentionNeeds, proportionalAttention: boolean): string {
  return `${start}-${end}-${expose.attention ?? ''}-${expose.keys ? 'k' : ''}-${expose.hiddenCosine ? 'cos' : ''}-${expose.keyCosine ? 'kcos' : ''}-${proportionalAttention ? 'sized' : ''}`;
}
