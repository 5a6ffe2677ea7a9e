/**
 * Segment overhead: prefill with each tower as one ONNX graph vs cut after every layer's attention
 * (identity hooks at every site), plus the throughput of one CLIP layer. Ratios come from one run.
 *
 *   node --import tsx bench/segments.ts --model DIR [--runs 3] [--text-tokens 60]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { median, syntheticPixels } from '../src/cli/benchTiming';
import { LlavaEngine } from '../src/engine/engine';
import { buildSegment } from '../src/engine/graph/segment';
import type { ModelConfig } from '../src/engine/models/family';
import { parseModelConfig } from '../src/engine/models/registry';
import { SessionFactory } from '../src/engine/runtime/provider';
import { WeightIndex } from '../src/engine/weights/safetensors';
import { HookSite, ReductionHook } from '../src/reduction/tokenState';
import { continueAsEngineProcess } from '../src/cli/engineProcess';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    runs: { type: 'string', default: '3' },
    'text-tokens': { type: 'string', default: '60' },
  },
});
const modelDir = values.model ?? 'test/fixtures/tiny-llava-llama';
const runs = Number(values.runs);

const identity = (site: HookSite): ReductionHook => ({ site, needs: {}, reduce: (view) => view });

async function main() {
  // The engine's process settings (V8's old-space floor, glibc's huge pages) take effect only at a start.
  await continueAsEngineProcess();
  // Two engines, so both plans stay loaded and runs can alternate without rebuilding sessions.
  const whole = await LlavaEngine.load(modelDir);
  const split = await LlavaEngine.load(modelDir);
  const { config } = whole;
  const everyLayer = [
    ...Array.from({ length: config.visionLayers }, (_, l) => identity(`vision:${l}`)),
    ...Array.from({ length: config.text.layers }, (_, l) => identity(`llm:${l}`)),
  ];
  const side = config.vision.imageSize;
  const pixels = syntheticPixels(side);
  const textIds = Array.from({ length: Number(values['text-tokens']) }, (_, i) => 1 + (i % 20));
  const ids = [...textIds.slice(0, 5), config.imageTokenId, ...textIds.slice(5)];

  const measure = async (engine: LlavaEngine, hooks: ReductionHook[]) => {
    const result = await engine.generate(ids, [pixels], { maxNewTokens: 1, hooks, stopTokenIds: [] });
    return { vision: result.timings.visionMs, llm: result.timings.prefillMs };
  };
  const wholeRuns: { vision: number; llm: number }[] = [];
  const splitRuns: { vision: number; llm: number }[] = [];
  for (let run = -1; run < runs; run++) {
    const a = await measure(whole, []);
    const b = await measure(split, everyLayer);
    // Run −1 warms both plans up (first runs allocate arenas and touch every weight page).
    if (run >= 0) {
      wholeRuns.push(a);
      splitRuns.push(b);
    }
  }
  const row = (name: string, pick: (m: { vision: number; llm: number }) => number) => {
    const one = median(wholeRuns.map(pick));
    const many = median(splitRuns.map(pick));
    return `| ${name} | ${one.toFixed(1)} | ${many.toFixed(1)} | ${(((many - one) / one) * 100).toFixed(1)} % |`;
  };
  console.log(
    `model: ${modelDir}; ${ids.length - 1 + (side / config.vision.patchSize) ** 2} prefill tokens; ` +
      `${runs} runs, medians; ${os.cpus().length} cores (${os.cpus()[0].model})`,
  );
  console.log('| prefill part | one segment per tower (ms) | one segment per layer (ms) | overhead |');
  console.log('|---|---|---|---|');
  console.log(row('vision tower + projector', (m) => m.vision));
  console.log(row('LLM prefill', (m) => m.llm));
  console.log(row('total', (m) => m.vision + m.llm));
  await whole.dispose();
  await split.dispose();
  await clipLayerThroughput(config);
}

/** One CLIP layer (attention + MLP) at the tower's full token count, timed alone. */
async function clipLayerThroughput(config: ModelConfig) {
  const weights = WeightIndex.open(modelDir);
  const towers = parseModelConfig(
    JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8')),
    'config.json',
  ).build(weights);
  const factory = new SessionFactory({ weightsFolder: path.dirname(weights.files[0]), candidates: ['cpu'] });
  const layer = Math.floor(config.visionLayers / 2);
  const start = 1 + 2 * layer;
  const session = await factory.create(
    (computeType) => buildSegment(towers.vision, { start, end: start + 2, computeType }).bytes,
  );
  const { hiddenSize: d, intermediateSize: inter, imageSize, patchSize } = config.vision;
  const tokens = (imageSize / patchSize) ** 2 + 1;
  const hidden = new ort.Tensor(
    'float32',
    Float32Array.from({ length: tokens * d }, (_, i) => Math.cos(i * 0.01)),
    [tokens, d],
  );
  const times: number[] = [];
  for (let i = 0; i < 2 + runs * 2; i++) {
    const t = performance.now();
    await session.run({ hidden });
    if (i >= 2) times.push(performance.now() - t);
  }
  // 2·N·(4d² + 2·d·I) for the projections and MLP, 2·2·N²·d for QKᵀ and PV.
  const flops = 2 * tokens * (4 * d * d + 2 * d * inter) + 4 * tokens * tokens * d;
  const ms = median(times);
  console.log(
    `\nCLIP layer ${layer} at ${tokens} tokens: ${ms.toFixed(1)} ms median of ${times.length}, ` +
      `${(flops / 1e9).toFixed(2)} GFLOP → ${(flops / ms / 1e6).toFixed(0)} GFLOP/s in float32`,
  );
  await session.release();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
