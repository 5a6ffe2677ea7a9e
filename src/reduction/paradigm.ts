import { FicocoError } from '../common/errors';
import { firstNaN, topIndices } from './arrays';
import { AttentionNeeds, HookSite, ReductionHook, SiteView, TokenState, VisualSpan } from './tokenState';

/**
 * The filter → correlate → compress paradigm as types. A step acts at one hook site: for each image
 * span the Filter splits the span's tokens into sources S (leave) and targets T (stay), the Correlate
 * maps every source to receivers in T with weights, and one Compress folds all sources into the
 * new token state. Stages are plain functions of typed arrays.
 */

/** What a stage sees: the site's tokens and signals, the span it reduces, and how many tokens to remove. */
export interface StageInput<P = StepParams> {
  view: SiteView;
  span: VisualSpan;
  /** visual tokens this step removes from the span (net: a fused sink token counts as staying) */
  remove: number;
  params: P;
}

/** Sequence indices, both ascending; S ∪ T = the span's tokens, S ∩ T = ∅. */
export interface Split {
  sources: Int32Array;
  targets: Int32Array;
  /** per span token (span order) the score the filter ranked by, when it has one (higher = leaves first) */
  scores?: Float32Array;
}

/** A new token built from sources (EViT's fused token); its index in `receivers` is SINK. */
export const SINK = -1;

/**
 * For source k (in `split.sources` order), its receivers are `receivers[offsets[k] .. offsets[k+1])`
 * with `weights` summing to 1. No receivers at all = pruning.
 */
export interface Correlation {
  offsets: Int32Array;
  receivers: Int32Array;
  weights: Float32Array;
}

export type Filter<P = StepParams> = (input: StageInput<P>) => Split;
export type Correlate<P = StepParams> = (input: StageInput<P>, split: Split) => Correlation;
/** Folds the sources of every span at once (splits and correlations concatenated in span order). */
export type Compress<P = StepParams> = (
  view: SiteView,
  split: Split,
  correlation: Correlation,
  params: P,
) => TokenState;

export type StepParams = Record<string, number | string | boolean>;

/** One step of a method: where, the three stages, and what the site must expose. */
export interface Step<P = StepParams> {
  site: HookSite;
  needs: AttentionNeeds;
  filter: Filter<P>;
  correlate: Correlate<P>;
  compress: Compress<P>;
  /** visual tokens to remove per image at this step */
  remove: number;
  /**
   * visual tokens per image this step leaves whatever reaches it (then `remove` is only the plan's estimate): set
   * where the tokens arriving depend on what earlier steps kept, as on a tiled image after its tower passes
   */
  leaves?: number;
  /**
   * on a tiled image's tower passes (the base image, then the tiles row-major; SiteView.pass), the visual tokens this
   * step leaves each pass, where each brings its own number (the patches that see the image)
   */
  passLeaves?: readonly number[];
  /**
   * the score this step keeps tokens by (higher stays), where it is on one scale on every tower pass (each pass's
   * [CLS] attention comes from its own softmax): on a tiled image the passes' tokens are ranked together by it, and
   * each pass leaves what the ranking keeps of it (leavesByRank) instead of its share of the budget
   */
  rank?: (view: SiteView, span: VisualSpan) => ArrayLike<number>;
  params: P;
}

/** What a step did, for `ficoco reduce`, provenance pictures and tests. */
export interface StepRecord {
  site: HookSite;
  /** visual tokens per image before and after */
  before: number[];
  after: number[];
  split: Split;
  correlation: Correlation;
  ms: number;
}

/** Visual tokens the steps remove in all, per image (as planned). */
export function removedTokens(steps: readonly Step[]): number {
  return steps.reduce((sum, step) => sum + step.remove, 0);
}

/** The correlation of pure pruning: no source has a receiver. */
export function noReceivers(split: Split): Correlation {
  return {
    offsets: new Int32Array(split.sources.length + 1),
    receivers: new Int32Array(0),
    weights: new Float32Array(0),
  };
}

/** K = 1: source k sends everything (weight 1) to `receivers[k]` (SINK for a new fused token). */
export function oneReceiverEach(receivers: Int32Array): Correlation {
  return {
    offsets: Int32Array.from({ length: receivers.length + 1 }, (_, k) => k),
    receivers,
    weights: new Float32Array(receivers.length).fill(1),
  };
}

/** Builds a CSR correlation from per-source receiver lists. */
export function correlationFrom(
  perSource: { receivers: ArrayLike<number>; weights: ArrayLike<number> }[],
): Correlation {
  const offsets = new Int32Array(perSource.length + 1);
  perSource.forEach((entry, k) => (offsets[k + 1] = offsets[k] + entry.receivers.length));
  const receivers = new Int32Array(offsets[perSource.length]);
  const weights = new Float32Array(offsets[perSource.length]);
  perSource.forEach((entry, k) => {
    receivers.set(Array.from(entry.receivers), offsets[k]);
    weights.set(Array.from(entry.weights), offsets[k]);
  });
  return { offsets, receivers, weights };
}

/** The span's token indices in sequence order. */
export function spanTokens(span: VisualSpan): Int32Array {
  const tokens = new Int32Array(span.count);
  for (let i = 0; i < span.count; i++) tokens[i] = span.start + i;
  return tokens;
}

/**
 * Splits a span by ranking: the `remove` tokens with the highest `score` (span order) leave, ties to the earlier token.
 */
export function splitByScore(span: VisualSpan, score: ArrayLike<number>, remove: number): Split {
  const order = Array.from({ length: span.count }, (_, i) => i).sort((a, b) => score[b] - score[a] || a - b);
  const leaving = new Set(order.slice(0, remove));
  const sources: number[] = [];
  const targets: number[] = [];
  for (let i = 0; i < span.count; i++) (leaving.has(i) ? sources : targets).push(span.start + i);
  return { sources: Int32Array.from(sources), targets: Int32Array.from(targets), scores: Float32Array.from(score) };
}

/**
 * Splits a span by importance (span order): the count − `remove` most important stay, top-k with ties to the earlier
 * token (the later one leaves); the split's score is −importance.
 */
export function splitByImportance(span: VisualSpan, importance: ArrayLike<number>, remove: number): Split {
  const split = splitByKept(span, topIndices(importance, span.count - remove));
  return { ...split, scores: Float32Array.from(importance, (a) => -a) };
}

/** Splits a span by the set of tokens that stay (span offsets). */
export function splitByKept(span: VisualSpan, keptOffsets: Iterable<number>): Split {
  const keep = new Set(keptOffsets);
  const sources: number[] = [];
  const targets: number[] = [];
  for (let i = 0; i < span.count; i++) (keep.has(i) ? targets : sources).push(span.start + i);
  return { sources: Int32Array.from(sources), targets: Int32Array.from(targets) };
}

/** Runs one step on a site view: filter and correlate per span, one compress for all. */
export function runStep<P>(step: Step<P>, view: SiteView, log?: StepRecord[]): TokenState {
  const started = performance.now();
  checkSignalsHaveNoNaN(view);
  const splits: Split[] = [];
  const correlations: Correlation[] = [];
  for (const span of view.spans) {
    const remove = stepRemoval(step, span.count, view.pass);
    const input: StageInput<P> = { view, span, remove, params: step.params };
    const split = remove > 0 ? step.filter(input) : { sources: new Int32Array(0), targets: spanTokens(span) };
    splits.push(split);
    correlations.push(remove > 0 ? step.correlate(input, split) : noReceivers(split));
  }
  const split = concatSplits(splits);
  const correlation = concatCorrelations(correlations);
  const reduced = split.sources.length === 0 ? view : step.compress(view, split, correlation, step.params);
  log?.push({
    site: step.site,
    before: view.spans.map((s) => s.count),
    after: reduced.spans.map((s) => s.count),
    split,
    correlation,
    ms: performance.now() - started,
  });
  return reduced;
}

/**
 * Refuses signals holding NaN (an overflow upstream, in half precision): every score compared with NaN is false, so a
 * step would silently keep tokens by their index. Infinities are fine: masked attention logits are −∞.
 */
function checkSignalsHaveNoNaN(view: SiteView): void {
  const signals = {
    attention: view.attention,
    meanKeys: view.meanKeys,
    hiddenCosine: view.hiddenCosine,
    keyCosine: view.keyCosine,
  };
  for (const [name, values] of Object.entries(signals)) {
    const at = values ? firstNaN(values) : -1;
    if (at >= 0)
      throw new FicocoError(
        `The ${name} the reduction step at ${view.site} reads holds NaN (at ${at}): the model overflowed before ` +
          'this layer, as half precision on a GPU can; run it on the CPU (ficoco.provider cpu, --provider cpu), ' +
          'which computes in float32.',
        'provider',
      );
  }
}

/**
 * What a step removes from a span of `count` tokens on tower pass `pass` of a tiled image, if it is one (see
 * Step.leaves and Step.passLeaves); one token always stays.
 */
export function stepRemoval(
  step: Pick<Step, 'remove' | 'leaves' | 'passLeaves'>,
  count: number,
  pass?: number,
): number {
  const passLeft = pass === undefined ? undefined : step.passLeaves?.[pass];
  const planned =
    step.leaves !== undefined ? count - step.leaves : passLeft !== undefined ? count - passLeft : step.remove;
  return Math.max(0, Math.min(planned, count - 1));
}

/**
 * Per pass of a tiled image (`views`, one span each), the tokens a ranked step leaves it: all passes' tokens ranked
 * together by `step.rank`, the best Σ passLeaves stay, every pass keeping at least its own best (ties to the earlier
 * pass, then token).
 */
export function leavesByRank(step: Pick<Step, 'rank' | 'passLeaves'>, views: readonly SiteView[]): number[] {
  const { rank, passLeaves } = step;
  if (!rank || passLeaves?.length !== views.length)
    throw new Error('a step ranks the passes together only with a score and a count for every pass');
  const keep = passLeaves.reduce((sum, tokens) => sum + tokens, 0);
  const leaves = views.map(() => 1);
  const rest: { score: number; pass: number; token: number }[] = [];
  views.forEach((view, pass) => {
    const scores = rank(view, view.spans[0]);
    const best = topIndices(scores, 1)[0];
    for (let token = 0; token < scores.length; token++)
      if (token !== best) rest.push({ score: scores[token], pass, token });
  });
  rest.sort((a, b) => b.score - a.score || a.pass - b.pass || a.token - b.token);
  for (const { pass } of rest.slice(0, Math.max(0, keep - views.length))) leaves[pass]++;
  return leaves;
}

/**
 * A step as an engine hook; a step with a rank, planned per pass (Step.passLeaves), also reduces a tiled image's passes
 * together (ReductionHook.reducePasses).
 */
export function stepHook<P>(step: Step<P>, log?: StepRecord[]): ReductionHook {
  const reduce = (view: SiteView) => runStep(step, view, log);
  if (!step.rank || !step.passLeaves) return { site: step.site, needs: step.needs, reduce };
  const reducePasses = (views: readonly SiteView[]) => {
    const passLeaves = leavesByRank(step, views);
    return views.map((view) => runStep({ ...step, passLeaves }, view, log));
  };
  return { site: step.site, needs: step.needs, reduce, reducePasses };
}

function concatSplits(splits: Split[]): Split {
  const join = (parts: Int32Array[]) => concatenated(parts, (length) => new Int32Array(length));
  return { sources: join(splits.map((s) => s.sources)), targets: join(splits.map((s) => s.targets)) };
}

function concatCorrelations(correlations: Correlation[]): Correlation {
  const offsets: number[] = [0];
  for (const c of correlations) {
    const base = offsets[offsets.length - 1];
    for (let k = 1; k < c.offsets.length; k++) offsets.push(base + c.offsets[k]);
  }
  return {
    offsets: Int32Array.from(offsets),
    receivers: concatenated(
      correlations.map((c) => c.receivers),
      (length) => new Int32Array(length),
    ),
    weights: concatenated(
      correlations.map((c) => c.weights),
      (length) => new Float32Array(length),
    ),
  };
}

/** The arrays one after another in one new array (typed-array copies: going through JS arrays cost ~50 µs a step). */
function concatenated<T extends Int32Array | Float32Array>(parts: readonly T[], allocate: (length: number) => T): T {
  const joined = allocate(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}
