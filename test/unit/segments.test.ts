import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import type { AttentionNeeds } from '../../src/reduction/tokenState';
import { ElemType, GraphBuilder } from '../../src/engine/graph/builder';
import {
  ATTENTION,
  Block,
  KEY_COSINE,
  MEAN_KEYS,
  POSITIONS,
  SegmentGraph,
  Tower,
  buildSegment,
  pastName,
  presentName,
} from '../../src/engine/graph/segment';
import { SessionFactory } from '../../src/engine/runtime/provider';
import { TowerRunner } from '../../src/engine/runtime/towerRunner';
import { WeightIndex, type TensorLocation } from '../../src/engine/weights/safetensors';
import { TokenState, VisualSpan, selectTokens, validateTokenState } from '../../src/reduction/tokenState';
import { bytesOf, float32ToBfloat16, writeSafetensors } from '../helpers/safetensors-writer';

// ---------------------------------------------------------------------------------------------
// A tiny hand-built tower, width 4, five blocks:
//   0 t:0  add      h + c
//   1 t:1  weights  (h·Wᵀ + b) ⊙ s   with W F32 at an unaligned offset, b F16, s BF16 (external data)
//   2 t:2  attn     two "heads" of scores 0.1·h·hᵀ and 0.2·h·hᵀ; h + mean_heads(softmax)·h; can expose
//                   attention (logits or probs, head mean) and mean keys (keys = [h, 2h] → 1.5h) or their cosine
//   3 t:3  cache    KV layer 0: keys = values = h as [1, T, 4], stored as the new rows; h + mean over past and new
//   4 t:4  scale    2h + 0.01·position (uses the positions input)
// ---------------------------------------------------------------------------------------------

const WIDTH = 4;
const C = [0.5, -1, 2, 0.25];
const W = Array.from({ length: 16 }, (_, i) => ((i * 7) % 5) * 0.25 - 0.5); // [out=4, in=4], row-major
const B = [0.5, -0.25, 1, 0];
const S = [1, 2, -0.5, 1.5];

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-segments-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let weights: { w: TensorLocation; b: TensorLocation; s: TensorLocation };
let tower: Tower;
let factory: SessionFactory;

before(() => {
  const file = path.join(root, 'tiny.safetensors');
  writeSafetensors(file, [
    // 3 bytes first so everything after starts at an offset that is not a multiple of 2 or 4
    { name: 'pad', dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
    { name: 'w', dtype: 'F32', shape: [4, 4], data: bytesOf(new Float32Array(W)) },
    { name: 'b', dtype: 'F16', shape: [4], data: bytesOf(new Uint16Array([0x3800, 0xb400, 0x3c00, 0x0000])) },
    { name: 's', dtype: 'BF16', shape: [4], data: bytesOf(float32ToBfloat16(new Float32Array(S))) },
  ]);
  const index = WeightIndex.openFile(file);
  weights = { w: index.get('w'), b: index.get('b'), s: index.get('s') };
  tower = makeTower();
  factory = new SessionFactory({ weightsFolder: root, candidates: ['cpu'], threads: 1 });
});

function makeTower(): Tower {
  const blocks: Block[] = [
    {
      id: 'tiny.l0.add',
      site: 't:0',
      width: WIDTH,
      emit: (scope, x) => ({
        hidden: scope.g.op('Add', [x, scope.g.constant('c', new Float32Array(C), [WIDTH])], 'l0.add'),
      }),
    },
    {
      id: 'tiny.l1.weights',
      site: 't:1',
      width: WIDTH,
      emit: (scope, x) => {
        const { g } = scope;
        const gemm = g.op('Gemm', [x, scope.weight(weights.w), scope.weight(weights.b)], 'l1.gemm', { transB: 1 });
        // asking for the same tensor again must reuse the initializer
        assert.equal(scope.weight(weights.w), scope.weight(weights.w));
        return { hidden: g.op('Mul', [gemm, scope.weight(weights.s)], 'l1.scaled') };
      },
    },
    {
      id: 'tiny.l2.attn',
      attends: true,
      site: 't:2',
      width: WIDTH,
      emit: (scope, x, expose) => {
        const { g } = scope;
        const outer = g.op('MatMul', [x, g.op('Transpose', [x], 'l2.xT', { perm: [1, 0] })], 'l2.outer');
        const head0 = g.op('Mul', [outer, g.scalar('f.0.1', 0.1)], 'l2.head0');
        const head1 = g.op('Mul', [outer, g.scalar('f.0.2', 0.2)], 'l2.head1');
        const axis0 = g.int64s('axes.0', [0]);
        const logits = g.op(
          'Concat',
          [g.op('Unsqueeze', [head0, axis0], 'l2.h0'), g.op('Unsqueeze', [head1, axis0], 'l2.h1')],
          'l2.logits',
          { axis: 0 },
        );
        const probs = g.op('Softmax', [logits], 'l2.probs', { axis: -1 });
        const meanProbs = g.op('ReduceMean', [probs], 'l2.mean_probs', { axes: [0], keepdims: 0 });
        const hidden = g.op('Add', [x, g.op('MatMul', [meanProbs, x], 'l2.ctx')], 'l2.out');
        const out: { hidden: string; attention?: string; meanKeys?: string } = { hidden };
        if (expose?.attention === 'probs') out.attention = meanProbs;
        if (expose?.attention === 'logits')
          out.attention = g.op('ReduceMean', [logits], 'l2.mean_logits', { axes: [0], keepdims: 0 });
        if (expose?.keys || expose?.keyCosine) {
          const keys = g.op(
            'Concat',
            [
              g.op('Unsqueeze', [x, axis0], 'l2.k0'),
              g.op('Unsqueeze', [g.op('Mul', [x, g.scalar('f.2', 2)], 'l2.2x'), axis0], 'l2.k1'),
            ],
            'l2.keys',
            { axis: 0 },
          );
          out.meanKeys = g.op('ReduceMean', [keys], 'l2.mean_keys', { axes: [0], keepdims: 0 });
        }
        return out;
      },
    },
    {
      id: 'tiny.l3.cache',
      site: 't:3',
      width: WIDTH,
      cacheLayer: 0,
      emit: (scope, x) => {
        const { g } = scope;
        const cache = scope.cache(0);
        const fresh = g.op('Unsqueeze', [x, g.int64s('axes.0', [0])], 'l3.kv');
        const keys = g.op('Concat', [cache.keys, fresh], 'l3.keys', { axis: 1 });
        cache.store(fresh, fresh);
        const mean = g.op('ReduceMean', [keys], 'l3.mean', { axes: [0, 1], keepdims: 0 });
        return { hidden: g.op('Add', [x, mean], 'l3.out') };
      },
    },
    {
      id: 'tiny.l4.scale',
      site: 't:4',
      width: WIDTH,
      emit: (scope, x) => {
        const { g } = scope;
        const pos = g.op(
          'Unsqueeze',
          [g.op('Cast', [scope.positions()], 'l4.pos_f', { to: ElemType.float32 }), g.int64s('axes.1', [1])],
          'l4.pos',
        );
        const doubled = g.op('Mul', [x, g.scalar('f.2', 2)], 'l4.double');
        return {
          hidden: g.op('Add', [doubled, g.op('Mul', [pos, g.scalar('f.0.01', 0.01)], 'l4.pos_scaled')], 'l4.out'),
        };
      },
    },
  ];
  return {
    name: 'tiny',
    input: { name: 'x', elemType: ElemType.float32, dims: ['tokens', WIDTH] },
    output: { name: 'y', dims: ['tokens', WIDTH] },
    blocks,
  };
}

// ------------------------------------------ reference ------------------------------------------

type Rows = number[][];

function softmaxRows(m: Rows): Rows {
  return m.map((row) => {
    const max = Math.max(...row);
    const e = row.map((v) => Math.exp(v - max));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / sum);
  });
}
const matmul = (a: Rows, b: Rows): Rows =>
  a.map((row) => b[0].map((_, j) => row.reduce((sum, v, k) => sum + v * b[k][j], 0)));
const transpose = (a: Rows): Rows => a[0].map((_, j) => a.map((row) => row[j]));

/** The tower in plain JS, block by block; returns every intermediate hidden state and the pieces hooks see. */
function reference(x: Rows, past: Rows, positions: number[]) {
  const states: Rows[] = [x];
  let h = x.map((row) => row.map((v, j) => v + C[j]));
  states.push(h);
  const w: Rows = [0, 1, 2, 3].map((o) => W.slice(o * 4, o * 4 + 4));
  h = matmul(h, transpose(w)).map((row) => row.map((v, j) => (v + B[j]) * S[j]));
  states.push(h);
  const outer = matmul(h, transpose(h));
  const logits0 = outer.map((r) => r.map((v) => 0.1 * v));
  const logits1 = outer.map((r) => r.map((v) => 0.2 * v));
  const p0 = softmaxRows(logits0);
  const p1 = softmaxRows(logits1);
  const meanProbs = p0.map((r, i) => r.map((v, j) => (v + p1[i][j]) / 2));
  const meanLogits = logits0.map((r, i) => r.map((v, j) => (v + logits1[i][j]) / 2));
  const meanKeys = h.map((r) => r.map((v) => 1.5 * v));
  const length = (r: number[]) => Math.sqrt(r.reduce((sum, v) => sum + v * v, 0));
  const keyCosine = meanKeys.map((a) =>
    meanKeys.map((b) => a.reduce((sum, v, j) => sum + v * b[j], 0) / (length(a) * length(b))),
  );
  const ctx = matmul(meanProbs, h);
  h = h.map((r, i) => r.map((v, j) => v + ctx[i][j]));
  states.push(h);
  const allKeys = [...past, ...h];
  const keyMean = [0, 1, 2, 3].map((j) => allKeys.reduce((s, r) => s + r[j], 0) / allKeys.length);
  h = h.map((r) => r.map((v, j) => v + keyMean[j]));
  states.push(h);
  h = h.map((r, i) => r.map((v) => 2 * v + 0.01 * positions[i]));
  states.push(h);
  return { states, meanProbs, meanLogits, meanKeys, keyCosine, allKeys };
}

// ------------------------------------------- running -------------------------------------------

const X: Rows = [
  [0.3, -0.7, 1.1, 0.05],
  [-1.2, 0.4, 0.0, 0.9],
  [0.6, 0.6, -0.3, -0.8],
];
const PAST: Rows = [
  [0.25, -0.5, 1.0, 2.0],
  [-1.0, 0.75, 0.5, -0.25],
];
const POS = [5, 6, 8];

const flat = (rows: Rows) => Float32Array.from(rows.flat());

function assertClose(actual: Float32Array, expected: Rows | number[], what: string, tolerance = 1e-4): void {
  const want = (expected as (number | number[])[]).flat();
  assert.equal(actual.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(
      Math.abs(actual[i] - want[i]) <= tolerance * Math.max(1, Math.abs(want[i])),
      `${what}[${i}]: ${actual[i]} vs ${want[i]}`,
    );
  }
}

interface Opened {
  graph: SegmentGraph;
  session: ort.InferenceSession;
}

async function openSegment(start: number, end: number, expose: AttentionNeeds = {}): Promise<Opened> {
  let graph: SegmentGraph | undefined;
  const session = await factory.create((computeType) => {
    graph = buildSegment(tower, { start, end, computeType, expose });
    return graph.bytes;
  });
  return { graph: graph!, session };
}

type Outputs = ort.InferenceSession.OnnxValueMapType;

async function runSegment(
  segment: { graph: Omit<SegmentGraph, 'bytes'>; session: ort.InferenceSession },
  hidden: Float32Array,
  past: Rows = PAST,
): Promise<Outputs> {
  const feeds: Record<string, ort.Tensor> = {
    [segment.graph.inputName]: new ort.Tensor('float32', hidden, [hidden.length / WIDTH, WIDTH]),
  };
  if (segment.graph.usesPositions)
    feeds[POSITIONS] = new ort.Tensor('int64', BigInt64Array.from(POS, BigInt), [POS.length]);
  for (const layer of segment.graph.cacheLayers) {
    feeds[pastName(layer, 'keys')] = new ort.Tensor('float32', flat(past), [1, past.length, WIDTH]);
    feeds[pastName(layer, 'values')] = new ort.Tensor('float32', flat(past), [1, past.length, WIDTH]);
    feeds[pastName(layer, 'mask')] = new ort.Tensor('float32', new Float32Array(past.length + POS.length), [
      past.length + POS.length,
    ]);
  }
  return segment.session.run(feeds);
}

async function runChain(
  segments: { graph: Omit<SegmentGraph, 'bytes'>; session: ort.InferenceSession }[],
): Promise<{ output: Float32Array; all: Outputs[] }> {
  let hidden: Float32Array = flat(X);
  const all: Outputs[] = [];
  for (const segment of segments) {
    const outputs = await runSegment(segment, hidden);
    all.push(outputs);
    hidden = outputs[segment.graph.outputName].data as Float32Array;
  }
  return { output: hidden, all };
}

const expected = () => reference(X, PAST, POS);

// -------------------------------------------- tests --------------------------------------------

describe('buildSegment on real ORT sessions', () => {
  test('the whole tower [0, n) matches a plain-JS reference (external F32/F16/BF16 weights at unaligned offsets)', async () => {
    assert.notEqual(weights.w.byteOffset % 4, 0, 'the F32 weight must start at an unaligned offset');
    assert.notEqual(weights.b.byteOffset % 2, 0, 'the F16 weight must start at an odd offset');
    const whole = await openSegment(0, tower.blocks.length);
    assert.equal(whole.graph.inputName, 'x');
    assert.equal(whole.graph.outputName, 'y');
    assert.equal(whole.graph.usesPositions, true);
    assert.deepEqual(whole.graph.cacheLayers, [0]);
    const outputs = await runSegment(whole, flat(X));
    assertClose(outputs.y.data as Float32Array, expected().states[5], 'y');
    await whole.session.release();
  });

  for (let k = 1; k < 5; k++) {
    test(`[0, ${k}) then [${k}, 5) equals [0, 5)`, async () => {
      const whole = await openSegment(0, 5);
      const head = await openSegment(0, k);
      const tail = await openSegment(k, 5);
      assert.equal(head.graph.inputName, 'x');
      assert.equal(tail.graph.outputName, 'y');
      assert.notEqual(head.graph.outputName, 'y');
      const direct = (await runSegment(whole, flat(X))).y.data as Float32Array;
      const firstPart = (await runSegment(head, flat(X)))[head.graph.outputName].data as Float32Array;
      assertClose(firstPart, expected().states[k], `hidden after block ${k - 1}`);
      const chained = (await runSegment(tail, firstPart)).y.data as Float32Array;
      assertClose(chained, Array.from(direct), 'chained vs direct', 1e-5);
      // positions and the cache are inputs only of the segments whose blocks use them
      assert.equal(head.graph.usesPositions, false);
      assert.deepEqual(head.graph.cacheLayers, k > 3 ? [0] : []);
      assert.deepEqual(tail.graph.cacheLayers, k <= 3 ? [0] : []);
      for (const s of [whole, head, tail]) await s.session.release();
    });
  }

  test('a middle segment [1, 3) (hidden in, hidden out) loads and computes its blocks', async () => {
    const middle = await openSegment(1, 3);
    assert.notEqual(middle.graph.inputName, 'x');
    assert.notEqual(middle.graph.outputName, 'y');
    const outputs = await runSegment(middle, flat(expected().states[1]));
    assertClose(outputs[middle.graph.outputName].data as Float32Array, expected().states[3], 'hidden after block 2');
    await middle.session.release();
  });

  test('the KV-cache block reads the past and outputs present.* with only the new tokens', async () => {
    const segment = await openSegment(3, 4);
    const input = flat(expected().states[3]);
    const outputs = await runSegment(segment, input);
    const keys = outputs[presentName(0, 'keys')];
    const values = outputs[presentName(0, 'values')];
    assert.deepEqual(keys.dims, [1, X.length, WIDTH]);
    assert.deepEqual(values.dims, [1, X.length, WIDTH]);
    assertClose(keys.data as Float32Array, expected().allKeys.slice(PAST.length), 'present keys');
    assertClose(
      outputs[segment.graph.outputName].data as Float32Array,
      expected().states[4],
      'hidden after the cache block',
    );
    // an empty past (first step) gives the same new rows
    const first = await runSegment(segment, input, []);
    assert.deepEqual(first[presentName(0, 'keys')].dims, [1, X.length, WIDTH]);
    await segment.session.release();
  });

  test('exposing attention probs / logits / mean keys / key cosine on the attention block', async () => {
    const ref = expected();
    for (const [expose, name, want] of [
      [{ attention: 'probs' }, ATTENTION, ref.meanProbs],
      [{ attention: 'logits' }, ATTENTION, ref.meanLogits],
      [{ keys: true }, MEAN_KEYS, ref.meanKeys],
      [{ keyCosine: true }, KEY_COSINE, ref.keyCosine],
    ] as const) {
      const segment = await openSegment(0, 3, expose);
      assert.deepEqual(segment.graph.exposes, expose);
      const outputs = await runSegment(segment, flat(X));
      assertClose(outputs[name].data as Float32Array, want, `${name} for ${JSON.stringify(expose)}`);
      for (const other of [ATTENTION, MEAN_KEYS, KEY_COSINE])
        if (other !== name) assert.equal(outputs[other], undefined, 'only what was asked for is an output');
      await segment.session.release();
    }
  });

  test('exposing attention on a block that has none throws', () => {
    assert.throws(
      () => buildSegment(tower, { start: 0, end: 1, computeType: ElemType.float32, expose: { attention: 'logits' } }),
      /tiny\.l0\.add…tiny\.l0\.add has no attention block to expose/,
    );
    assert.doesNotThrow(
      () => buildSegment(tower, { start: 0, end: 4, computeType: ElemType.float32, expose: { keys: true } }),
      'a segment ending after its attention block exposes that block',
    );
  });

  test(
    'a weight must be stored as a float, and quantized blocks as U8: a tensor of another dtype is ' +
      'refused at build time',
    () => {
      const pad = WeightIndex.openFile(path.join(root, 'tiny.safetensors')).get('pad');
      const using = (read: (scope: Parameters<Block['emit']>[0]) => string): Tower => ({
        ...tower,
        blocks: [
          { ...tower.blocks[0], emit: (scope, x) => ({ hidden: scope.g.op('Add', [x, read(scope)], 'l0.bad') }) },
        ],
      });
      assert.throws(
        () =>
          buildSegment(
            using((scope) => scope.weight(pad)),
            { start: 0, end: 1, computeType: ElemType.float32 },
          ),
        /pad is stored as U8; a weight must be F32, F16 or BF16/,
      );
      assert.throws(
        () =>
          buildSegment(
            using((scope) => scope.quantizedBytes(weights.w)),
            { start: 0, end: 1, computeType: ElemType.float32 },
          ),
        /w is stored as F32; quantized weights are U8 or I8/,
      );
    },
  );

  test('float16 compute: float32 at the edges, F16 weights used as stored, F32/BF16 weights cast, cache in float16', () => {
    const model = onnx.ModelProto.decode(
      buildSegment(tower, { start: 0, end: 5, computeType: ElemType.float16 }).bytes,
    );
    const graph = model.graph!;
    const typeOf = (info: onnx.IValueInfoProto) => info.type!.tensorType!.elemType;
    const inputs = Object.fromEntries(graph.input!.map((i) => [i.name, typeOf(i)]));
    const outputs = Object.fromEntries(graph.output!.map((o) => [o.name, typeOf(o)]));
    assert.deepEqual(inputs, {
      x: ElemType.float32,
      [POSITIONS]: ElemType.int64,
      [pastName(0, 'keys')]: ElemType.float16,
      [pastName(0, 'values')]: ElemType.float16,
      [pastName(0, 'mask')]: ElemType.float16,
    });
    assert.deepEqual(outputs, {
      y: ElemType.float32,
      [presentName(0, 'keys')]: ElemType.float16,
      [presentName(0, 'values')]: ElemType.float16,
    });
    const casts = graph.node!.filter((n) => n.opType === 'Cast');
    const castInputs = casts.map((n) => n.input![0]);
    assert.ok(castInputs.includes('x'), 'the float32 input is cast to float16');
    assert.ok(castInputs.includes('w') && castInputs.includes('s'), 'F32 and BF16 weights are cast');
    assert.ok(!castInputs.includes('b'), 'the F16 weight is used as stored');
    const external = graph.initializer!.filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
    assert.deepEqual(
      external.map((t) => t.name).sort(),
      ['b', 's', 'w'],
      'one initializer per weight even when asked for twice',
    );
    const w = external.find((t) => t.name === 'w')!;
    assert.equal(w.dataType, ElemType.float32);
    assert.deepEqual(Object.fromEntries(w.externalData!.map((e) => [e.key, e.value])), {
      location: 'tiny.safetensors',
      offset: String(weights.w.byteOffset),
      length: '64',
    });
  });
});

describe('TowerRunner', () => {
  test('no hooks → exactly one segment over the whole tower', async () => {
    const runner = new TowerRunner(tower, factory);
    const segments = await runner.segments(new Map());
    assert.equal(segments.length, 1);
    assert.equal(segments[0].start, 0);
    assert.equal(segments[0].end, 5);
    assert.equal(segments[0].site, undefined);
    assertClose((await runChain(segments)).output, expected().states[5], 'y');
    await runner.release();
  });

  test('hooks at two sites → three segments cut right after those blocks, in tower order', async () => {
    const runner = new TowerRunner(tower, factory);
    // given out of order on purpose
    const segments = await runner.segments(
      new Map<string, AttentionNeeds>([
        ['t:2', { attention: 'probs' }],
        ['t:0', {}],
      ]),
    );
    assert.deepEqual(
      segments.map((s) => [s.start, s.end, s.site]),
      [
        [0, 1, 't:0'],
        [1, 3, 't:2'],
        [3, 5, undefined],
      ],
    );
    assert.deepEqual(segments[1].graph.exposes, { attention: 'probs' });
    const { output, all } = await runChain(segments);
    assertClose(output, expected().states[5], 'chained y');
    assertClose(all[0][segments[0].graph.outputName].data as Float32Array, expected().states[1], 'hidden at t:0');
    assertClose(all[1][segments[1].graph.outputName].data as Float32Array, expected().states[3], 'hidden at t:2');
    assertClose(all[1][ATTENTION].data as Float32Array, expected().meanProbs, 'attention at t:2');
    assert.equal(all[0][ATTENTION], undefined);
    await runner.release();
  });

  test('a hook after the last block leaves no empty trailing segment', async () => {
    const runner = new TowerRunner(tower, factory);
    const segments = await runner.segments(new Map([['t:4', {}]]));
    assert.deepEqual(
      segments.map((s) => [s.start, s.end, s.site]),
      [[0, 5, 't:4']],
    );
    await runner.release();
  });

  test('an unknown site throws', async () => {
    const runner = new TowerRunner(tower, factory);
    await assert.rejects(runner.segments(new Map([['t:9', {}]])), /tiny tower has no hook site t:9/);
  });

  test('asking for attention at a site whose block cannot expose it throws', async () => {
    const runner = new TowerRunner(tower, factory);
    await assert.rejects(
      runner.segments(new Map<string, AttentionNeeds>([['t:1', { attention: 'logits' }]])),
      /tiny\.l0\.add…tiny\.l1\.weights has no attention block to expose/,
    );
  });

  test('sessions are reused for the same segment and released when neither the whole tower nor the latest cut needs them', async () => {
    const runner = new TowerRunner(tower, factory);
    const a = await runner.segments(new Map([['t:1', {}]]));
    const again = await runner.segments(new Map([['t:1', {}]]));
    assert.equal(again[0].session, a[0].session);
    assert.equal(again[1].session, a[1].session);
    // a plan sharing [0, 2) keeps that session; [2, 5) is new
    const b = await runner.segments(
      new Map([
        ['t:1', {}],
        ['t:3', {}],
      ]),
    );
    assert.deepEqual(
      b.map((s) => [s.start, s.end]),
      [
        [0, 2],
        [2, 4],
        [4, 5],
      ],
    );
    assert.equal(b[0].session, a[0].session);
    // only the latest cut keeps its sessions: going back to the cut before builds [2, 5) again
    const a1 = await runner.segments(new Map([['t:1', {}]]));
    assert.equal(a1[0].session, a[0].session);
    assert.notEqual(a1[1].session, a[1].session);
    // the whole tower stays loaded across cuts
    const whole = await runner.segments(new Map());
    await runner.segments(new Map([['t:3', {}]]));
    assert.equal((await runner.segments(new Map()))[0].session, whole[0].session);
    // a different exposure is a different graph
    const c = await runner.segments(new Map<string, AttentionNeeds>([['t:2', { keys: true }]]));
    const d = await runner.segments(new Map<string, AttentionNeeds>([['t:2', {}]]));
    assert.notEqual(c[0].session, d[0].session);
    // going back to a plan after others were asked for builds fresh sessions that still compute correctly
    const a2 = await runner.segments(new Map([['t:1', {}]]));
    assert.notEqual(a2[0].session, a[0].session);
    assertClose((await runChain(a2)).output, expected().states[5], 'y after reload');
    await runner.release();
  });
});

describe('GraphBuilder', () => {
  const initializers = (g: GraphBuilder) => onnx.ModelProto.decode(g.build()).graph!.initializer!;

  test('identical constants are shared: one initializer', () => {
    const g = new GraphBuilder('t');
    const a = g.constant('k', Float32Array.of(1, 2, 3), [3]);
    const b = g.constant('other_hint', Float32Array.of(1, 2, 3), [3]);
    assert.equal(a, b);
    assert.equal(g.int64s('i', [4, 5]), g.int64s('j', [4, 5]));
    assert.equal(g.scalar('s', 0.5), g.scalar('s2', 0.5));
    assert.equal(initializers(g).length, 3);
  });

  test('constants differing in values, shape or type are distinct', () => {
    const g = new GraphBuilder('t');
    const names = new Set([
      g.constant('k', Float32Array.of(1, 2), [2]),
      g.constant('k', Float32Array.of(1, 3), [2]),
      g.constant('k', Float32Array.of(1, 2), [1, 2]),
      g.constant('k', BigInt64Array.of(1n, 2n), [2]),
      g.scalar('k', 1),
      g.constant('k', Float32Array.of(1), [1]),
    ]);
    assert.equal(names.size, 6);
    const stored = initializers(g);
    assert.equal(stored.length, 6);
    const int = stored.find((t) => t.dataType === ElemType.int64)!;
    assert.deepEqual(Array.from(new BigInt64Array(new Uint8Array(int.rawData!).buffer)), [1n, 2n]);
  });

  test('a constant built from a subarray stores only its own bytes', () => {
    const g = new GraphBuilder('t');
    const backing = Float32Array.of(9, 1, 2, 9);
    g.constant('k', backing.subarray(1, 3), [2]);
    const [stored] = initializers(g);
    assert.deepEqual(Array.from(new Float32Array(new Uint8Array(stored.rawData!).buffer)), [1, 2]);
  });

  test('fresh names never collide with each other, inputs or earlier suffixed names', () => {
    const g = new GraphBuilder('t');
    g.input('x', ElemType.float32, [1]);
    const names = [g.fresh('a'), g.fresh('a'), g.fresh('a_1'), g.fresh('a'), g.fresh('x'), g.fresh('x_1')];
    names.push(
      g.op('Identity', ['x'], 'a'),
      g.constant('a', Float32Array.of(7), [1]),
      g.externalInitializer('a', ElemType.float32, [1], { location: 'f', offset: 0, length: 4 }),
    );
    assert.equal(new Set([...names, 'x']).size, names.length + 1, names.join(', '));
    assert.deepEqual(names.slice(0, 2), ['a', 'a_1']);
  });

  test('fresh avoids names declared as outputs', () => {
    const g = new GraphBuilder('t');
    const x = g.input('x', ElemType.float32, [1]);
    g.output('out', g.op('Identity', [x], 'y'), ElemType.float32, [1]);
    assert.notEqual(g.fresh('out'), 'out');
  });
});

// ----------------------------------------- token state -----------------------------------------

/** 2 text tokens, a 6-token image span (a 2×3 grid: patch p owned by token 2 + p), 2 text tokens, width 2. */
function sampleState(): TokenState {
  const count = 10;
  return {
    hidden: Float32Array.from({ length: count * 2 }, (_, i) => i),
    count,
    width: 2,
    sizes: Float32Array.from({ length: count }, (_, i) => 1 + i / 10),
    positions: Int32Array.from({ length: count }, (_, i) => 100 + i),
    spans: [
      {
        start: 2,
        count: 6,
        grid: { rows: 2, cols: 3 },
        patchOwner: Int32Array.from({ length: 6 }, (_, p) => 2 + p),
        tokenPatch: Int32Array.from({ length: 6 }, (_, p) => p),
      },
    ],
  };
}

describe('selectTokens', () => {
  test('carries rows, sizes and positions of the kept tokens', () => {
    const kept = [0, 3, 4, 9];
    const out = selectTokens(sampleState(), kept);
    assert.equal(out.count, 4);
    assert.equal(out.width, 2);
    assert.deepEqual(Array.from(out.hidden), [0, 1, 6, 7, 8, 9, 18, 19]);
    assert.deepEqual(Array.from(out.sizes), [1, 1.3, 1.4, 1.9].map(Math.fround));
    assert.deepEqual(Array.from(out.positions), [100, 103, 104, 109]);
  });

  test('recomputes span start and count when tokens before and inside it are dropped', () => {
    // drop text token 1 (before) and image tokens 2, 5, 7 (inside): image tokens 3, 4, 6 remain
    const out = selectTokens(sampleState(), [0, 3, 4, 6, 8, 9]);
    assert.equal(out.spans.length, 1);
    assert.equal(out.spans[0].start, 1);
    assert.equal(out.spans[0].count, 3);
    assert.deepEqual(out.spans[0].grid, { rows: 2, cols: 3 });
  });

  test('remaps patch owners and marks dropped patches −1', () => {
    const out = selectTokens(sampleState(), [0, 3, 4, 6, 8, 9]);
    // patches 0..5 were owned by tokens 2..7; token 3 → 1, 4 → 2, 6 → 3
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [-1, 1, 2, -1, 3, -1]);
    assert.deepEqual(Array.from(out.spans[0].tokenPatch), [1, 2, 4]);
    validateTokenState(out, 'llm:2', 2);
  });

  test('owners that were merged (several patches per token) follow their token; already-dropped stay −1', () => {
    const state = sampleState();
    state.spans[0].patchOwner = Int32Array.of(2, 2, 3, -1, 5, 5);
    const out = selectTokens(state, [0, 1, 3, 5, 8]);
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [-1, -1, 2, -1, 3, 3]);
    assert.equal(out.spans[0].start, 2);
    assert.equal(out.spans[0].count, 2);
  });

  test('a span with every token dropped becomes empty at the right place', () => {
    const out = selectTokens(sampleState(), [0, 1, 8, 9]);
    assert.deepEqual({ start: out.spans[0].start, count: out.spans[0].count }, { start: 2, count: 0 });
    assert.deepEqual(Array.from(out.spans[0].patchOwner), [-1, -1, -1, -1, -1, -1]);
  });

  test('two spans are recomputed independently', () => {
    const state = sampleState();
    const second: VisualSpan = {
      start: 8,
      count: 2,
      grid: { rows: 1, cols: 2 },
      patchOwner: Int32Array.of(8, 9),
      tokenPatch: Int32Array.of(0, 1),
    };
    state.spans = [
      {
        ...state.spans[0],
        count: 5,
        patchOwner: Int32Array.of(2, 3, 4, 5, 6),
        tokenPatch: Int32Array.of(0, 1, 2, 3, 4),
      },
      second,
    ];
    const out = selectTokens(state, [0, 2, 6, 7, 9]);
    assert.deepEqual(
      out.spans.map((s) => [s.start, s.count]),
      [
        [1, 2],
        [4, 1],
      ],
    );
    assert.deepEqual(Array.from(out.spans[1].patchOwner), [-1, 4]);
    validateTokenState(out, 'projector', 2);
  });

  test('does not mutate its input', () => {
    const state = sampleState();
    const before = JSON.stringify({
      ...state,
      hidden: Array.from(state.hidden),
      owner: Array.from(state.spans[0].patchOwner),
    });
    selectTokens(state, [1, 2]);
    assert.equal(
      JSON.stringify({ ...state, hidden: Array.from(state.hidden), owner: Array.from(state.spans[0].patchOwner) }),
      before,
    );
  });

  test('unsorted, duplicate or out-of-range kept indices throw', () => {
    assert.throws(() => selectTokens(sampleState(), [3, 1]), /sorted, unique/);
    assert.throws(() => selectTokens(sampleState(), [1, 1, 2]), /sorted, unique/);
    assert.throws(() => selectTokens(sampleState(), [0, 10]), /below 10/);
    assert.throws(() => selectTokens(sampleState(), [-1, 0]), /sorted, unique/);
  });
});

describe('validateTokenState', () => {
  const fails = (mutate: (s: TokenState) => void, message: RegExp) => {
    const state = sampleState();
    mutate(state);
    assert.throws(
      () => validateTokenState(state, 'vision:3', 2),
      (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.match(error.message, /reduction hook at vision:3 returned an invalid state/);
        assert.match(error.message, message);
        return true;
      },
    );
  };

  test('accepts a well-formed state', () => {
    validateTokenState(sampleState(), 'vision:3', 2);
  });

  test('rejects a width other than the site width', () => {
    assert.throws(
      () => validateTokenState(sampleState(), 'llm:1', 3),
      /reduction hook at llm:1 returned an invalid state: width 2, expected 3/,
    );
  });

  test('rejects zero tokens', () =>
    fails(
      (s) =>
        Object.assign(s, {
          count: 0,
          hidden: new Float32Array(0),
          sizes: new Float32Array(0),
          positions: new Int32Array(0),
          spans: [],
        }),
      /no tokens left/,
    ));

  test('rejects hidden, sizes or positions of the wrong length', () => {
    fails((s) => (s.hidden = s.hidden.subarray(2)), /hidden has 18 values for 10×2/);
    fails((s) => (s.sizes = s.sizes.subarray(1)), /9 sizes for 10 tokens/);
    fails((s) => (s.positions = new Int32Array(11)), /11 positions for 10 tokens/);
  });

  test('rejects spans out of range or out of order', () => {
    fails((s) => (s.spans[0].count = 9), /visual span \[2, 11\)/);
    fails((s) => (s.spans = [s.spans[0], { ...s.spans[0], start: 4, count: 2 }]), /visual span \[4, 6\) out of order/);
  });

  test('rejects patch owners outside their span', () => {
    fails((s) => (s.spans[0].patchOwner[0] = 1), /patch owner 1 outside its span/);
    fails((s) => (s.spans[0].patchOwner[5] = 8), /patch owner 8 outside its span/);
    fails((s) => (s.spans[0].patchOwner[2] = -2), /patch owner -2 outside its span/);
  });
});
