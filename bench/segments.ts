/**
 * Segment overhead: prefill with each tower as one ONNX graph vs cut after every layer's attention
 * (identity hooks at every site), plus the throughput of one CLIP layer. Ratios come from one run.
 *
 *   node --import tsx bench/segments.ts --model DIR [--runs 3] [--text-tokens 60]
 */
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { LlavaEngine } from '../src/engine/engine';
import { buildSegment } from '../src/engine/graph/segment';
import { llavaTowers } from '../src/engine/models/llava';
import { SessionFactory } from '../src/engine/runtime/provider';
import { WeightIndex } from '../src/engine/weights/safetensors';
import { ElemType } from '../src/engine/graph/builder';
import { HookSite, ReductionHook } from '../src/reduction/tokenState';

const { values } = parseArgs({ options: { model: { type: 'string' }, runs: { type: 'string', default: '3' }, 'text-tokens': { type: 'string', default: '60' } } });
const modelDir = values.model ?? 'test/fixtures/tiny-llava-llama';
const runs = Number(values.runs);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const identity = (site: HookSite): ReductionHook => ({ site, needs: {}, reduce: (view) => view });

async function main() {
  const engine = await LlavaEngine.load(modelDir);
  const { config } = engine;
  const everyLayer = [
    ...Array.from({ length: config.visionFeatureLayer }, (_, l) => identity(`vision:${l}`)),
    ...Array.from({ length: config.text.layers }, (_, l) => identity(`llm:${l}`)),
  ];
  const side = config.vision.imageSize;
  const pixels = Float32Array.from({ length: 3 * side * side }, (_, i) => Math.sin(i * 0.001));
  const textIds = Array.from({ length: Number(values['text-tokens']) }, (_, i) => 1 + (i % 20));
  const ids = [...textIds.slice(0, 5), config.imageTokenId, ...textIds.slice(5)];

  const measure = async (hooks: ReductionHook[]) => {
    const result = await engine.generate(ids, [pixels], { maxNewTokens: 1, hooks, stopTokenIds: [] });
    return { vision: result.timings.visionMs, llm: result.timings.prefillMs };
  };
  // Warm up both plans (sessions are built on first use and kept per plan).
  await measure([]);
  const whole: { vision: number; llm: number }[] = [];
  const split: { vision: number; llm: number }[] = [];
  for (let run = 0; run < runs; run++) {
    whole.push(await measure([]));
    if (run === 0) await measure(everyLayer);
    split.push(await measure(everyLayer));
  }
  const row = (name: string, pick: (m: { vision: number; llm: number }) => number) => {
    const one = median(whole.map(pick));
    const many = median(split.map(pick));
    return `| ${name} | ${one.toFixed(1)} | ${many.toFixed(1)} | ${(((many - one) / one) * 100).toFixed(1)} % |`;
  };
  console.log(`model: ${modelDir}; ${ids.length - 1 + (side / config.vision.patchSize) ** 2} prefill tokens; ${runs} runs, medians; ${os.cpus().length} cores (${os.cpus()[0].model})`);
  console.log('| prefill part | one segment per tower (ms) | one segment per layer (ms) | overhead |');
  console.log('|---|---|---|---|');
  console.log(row('vision tower + projector', (m) => m.vision));
  console.log(row('LLM prefill', (m) => m.llm));
  console.log(row('total', (m) => m.vision + m.llm));
  await engine.dispose();
  await clipLayerThroughput();
}

/** One CLIP layer (attention + MLP) at the tower's full token count, timed alone. */
async function clipLayerThroughput() {
  const weights = WeightIndex.open(modelDir);
  const config = (await LlavaEngine.load(modelDir)).config;
  const towers = llavaTowers(config, weights);
  const factory = new SessionFactory({ weightsFolder: weights.files.map((f) => f.slice(0, f.lastIndexOf('/')))[0], provider: 'cpu' });
  const layer = Math.floor(config.visionFeatureLayer / 2);
  const start = 1 + 2 * layer;
  const session = await factory.create((computeType) => buildSegment(towers.vision, start, start + 2, computeType).bytes);
  const { hiddenSize: d, intermediateSize: inter, imageSize, patchSize } = config.vision;
  const tokens = (imageSize / patchSize) ** 2 + 1;
  const hidden = new ort.Tensor('float32', Float32Array.from({ length: tokens * d }, (_, i) => Math.cos(i * 0.01)), [tokens, d]);
  const times: number[] = [];
  for (let i = 0; i < 2 + runs * 2; i++) {
    const t = performance.now();
    await session.run({ hidden });
    if (i >= 2) times.push(performance.now() - t);
  }
  // 2·N·(4d² + 2·d·I) for the projections and MLP, 2·2·N²·d for QKᵀ and PV.
  const flops = 2 * tokens * (4 * d * d + 2 * d * inter) + 4 * tokens * tokens * d;
  const ms = median(times);
  console.log(`\nCLIP layer ${layer} at ${tokens} tokens: ${ms.toFixed(1)} ms median of ${times.length}, ${(flops / 1e9).toFixed(2)} GFLOP → ${(flops / ms / 1e6).toFixed(0)} GFLOP/s (ElemType ${ElemType.float32 === 1 ? 'float32' : ''})`);
  await session.release();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
