import { seededRandom } from '../../src/common/random';
import { cosineMatrix } from '../../src/reduction/arrays';
import { ModelShape } from '../../src/reduction/method';
import { StepRecord } from '../../src/reduction/paradigm';
import { ReductionPlan, planHooks } from '../../src/reduction/registry';
import {
  HookSite,
  ReductionHook,
  SiteView,
  TokenState,
  VisualSpan,
  validateTokenState,
} from '../../src/reduction/tokenState';

/**
 * A miniature engine for reduction tests: random hidden states, attention computed from fixed random
 * query/key projections of the current tokens, and the engine's site order (vision layers → features →
 * projector → packed → LLM layers). No ONNX Runtime, so every method can be checked on many shapes quickly.
 */
export interface SimOptions {
  grid: { rows: number; cols: number };
  width: number;
  visionLayers: number;
  textLayers: number;
  textBefore: number;
  textAfter: number;
  images: number;
  hasClassToken: boolean;
  seed: number;
}

export const DEFAULT_SIM: SimOptions = {
  grid: { rows: 12, cols: 12 },
  width: 16,
  visionLayers: 6,
  textLayers: 6,
  textBefore: 4,
  textAfter: 7,
  images: 1,
  hasClassToken: true,
  seed: 1,
};

export function simShape(options: SimOptions): ModelShape {
  return {
    visionLayers: options.visionLayers,
    textLayers: options.textLayers,
    visualTokens: options.grid.rows * options.grid.cols,
    grid: options.grid,
    hasClassToken: options.hasClassToken,
  };
}

export interface SimResult {
  /** the decoder's sequence after every step */
  final: TokenState;
  /** each image's tokens entering the decoder (after vision-side steps) */
  visualAtDecoder: number[];
  records: StepRecord[];
  /** the states each hook returned, in order, with their site */
  states: { site: HookSite; view: SiteView; out: TokenState }[];
}

const HEAD_DIM = 8;

export function simulate(plan: ReductionPlan, options: SimOptions): SimResult {
  const random = seededRandom(options.seed);
  const records: StepRecord[] = [];
  const hooks = new Map(planHooks(plan, records).map((hook) => [hook.site, hook]));
  const projections = {
    query: randomMatrix(random, options.width, HEAD_DIM),
    key: randomMatrix(random, options.width, HEAD_DIM),
  };
  const states: SimResult['states'] = [];
  const apply = (site: HookSite, state: TokenState, hasClassToken: boolean): TokenState => {
    const hook = hooks.get(site);
    if (!hook) return state;
    const view = siteView(site, state, hook, projections, hasClassToken);
    const out = hook.reduce(view);
    validateTokenState(out, site, state.width);
    states.push({ site, view, out });
    return out;
  };

  const patches = options.grid.rows * options.grid.cols;
  const cls = options.hasClassToken ? 1 : 0;
  const images: TokenState[] = [];
  for (let image = 0; image < options.images; image++) {
    let state = freshState(random, cls + patches, options.width, [span(cls, patches, options.grid)]);
    for (let layer = 0; layer < options.visionLayers; layer++)
      state = apply(`vision:${layer}`, state, options.hasClassToken);
    state = apply('features', state, options.hasClassToken);
    state = dropClassToken(state, cls);
    images.push(apply('packed', apply('projector', state, false), false));
  }
  let sequence = splice(random, images, options);
  for (let layer = 0; layer < options.textLayers; layer++) sequence = apply(`llm:${layer}`, sequence, false);
  return { final: sequence, visualAtDecoder: images.map((image) => image.count), records, states };
}

function span(start: number, patches: number, grid: { rows: number; cols: number }): VisualSpan {
  return {
    start,
    count: patches,
    grid,
    patchOwner: Int32Array.from({ length: patches }, (_, p) => start + p),
    tokenPatch: Int32Array.from({ length: patches }, (_, p) => p),
  };
}

function freshState(random: () => number, count: number, width: number, spans: VisualSpan[]): TokenState {
  return {
    hidden: Float32Array.from({ length: count * width }, () => random() * 2 - 1),
    count,
    width,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans,
  };
}

function dropClassToken(state: TokenState, cls: number): TokenState {
  if (cls === 0) return state;
  const s = state.spans[0];
  return {
    hidden: state.hidden.slice(state.width),
    count: state.count - 1,
    width: state.width,
    sizes: state.sizes.slice(1),
    positions: state.positions.slice(1),
    spans: [{ ...s, start: s.start - 1, patchOwner: s.patchOwner.map((o) => (o < 0 ? -1 : o - 1)) }],
  };
}

/** text before, then each image followed by its share of the text after, as a chat prompt would be. */
function splice(random: () => number, images: TokenState[], options: SimOptions): TokenState {
  const text = (n: number) => freshState(random, n, options.width, []);
  const parts: TokenState[] = [text(options.textBefore)];
  for (const image of images) parts.push(image, text(image === images[images.length - 1] ? options.textAfter : 1));
  const count = parts.reduce((sum, p) => sum + p.count, 0);
  const hidden = new Float32Array(count * options.width);
  const sizes = new Float32Array(count);
  const spans: VisualSpan[] = [];
  let at = 0;
  for (const part of parts) {
    hidden.set(part.hidden, at * options.width);
    sizes.set(part.sizes, at);
    for (const s of part.spans)
      spans.push({ ...s, start: at + s.start, patchOwner: s.patchOwner.map((o) => (o < 0 ? -1 : o + at)) });
    at += part.count;
  }
  return {
    hidden,
    count,
    width: options.width,
    sizes,
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans,
  };
}

function siteView(
  site: HookSite,
  state: TokenState,
  hook: ReductionHook,
  projections: { query: Float64Array; key: Float64Array },
  hasClassToken: boolean,
): SiteView {
  const queries = project(state, projections.query);
  const keys = project(state, projections.key);
  const n = state.count;
  const logits = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let d = 0; d < HEAD_DIM; d++) sum += queries[i * HEAD_DIM + d] * keys[j * HEAD_DIM + d];
      logits[i * n + j] = sum / Math.sqrt(HEAD_DIM);
    }
  }
  const view: SiteView = { ...state, site, keyCount: n, hasClassToken };
  if (hook.needs.attention === 'logits') view.attention = logits;
  if (hook.needs.attention === 'probs') view.attention = rowSoftmax(logits, n);
  if (hook.needs.keys) view.meanKeys = Float32Array.from(keys);
  if (hook.needs.hiddenCosine) view.hiddenCosine = cosineMatrix(state.hidden, state.count, state.width);
  if (hook.needs.keyCosine) view.keyCosine = cosineMatrix(Float32Array.from(keys), n, HEAD_DIM);
  return view;
}

function project(state: TokenState, matrix: Float64Array): Float64Array {
  const out = new Float64Array(state.count * HEAD_DIM);
  for (let i = 0; i < state.count; i++) {
    for (let d = 0; d < HEAD_DIM; d++) {
      let sum = 0;
      for (let k = 0; k < state.width; k++) sum += state.hidden[i * state.width + k] * matrix[k * HEAD_DIM + d];
      out[i * HEAD_DIM + d] = sum;
    }
  }
  return out;
}

function rowSoftmax(logits: Float32Array, n: number): Float32Array {
  const probs = new Float32Array(logits.length);
  for (let i = 0; i < n; i++) {
    const rowValues = logits.subarray(i * n, (i + 1) * n);
    const max = Math.max(...rowValues);
    let total = 0;
    for (let j = 0; j < n; j++) total += Math.exp(rowValues[j] - max);
    for (let j = 0; j < n; j++) probs[i * n + j] = Math.exp(rowValues[j] - max) / total;
  }
  return probs;
}

function randomMatrix(random: () => number, rows: number, cols: number): Float64Array {
  return Float64Array.from({ length: rows * cols }, () => (random() * 2 - 1) / Math.sqrt(rows));
}
