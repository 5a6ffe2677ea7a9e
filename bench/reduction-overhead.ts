/**
 * Reduction overhead: the time each method's steps take (pure TypeScript between ONNX segments) next to
 * the layer they sit beside, on a full-size model at its real token counts. Ratios come from one run.
 *
 *   node --import tsx bench/reduction-overhead.ts --model DIR [--budget 64] [--methods a,b]
 */
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { LlavaEngine } from '../src/engine/engine';
import { METHODS, planHooks, planReduction } from '../src/reduction/registry';
import { type HookSite, siteStage } from '../src/reduction/tokenState';
import { syntheticPixels } from '../src/cli/benchTiming';
import { continueAsEngineProcess } from '../src/cli/engineProcess';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    budget: { type: 'string', default: '64' },
    methods: { type: 'string' },
    'text-tokens': { type: 'string', default: '60' },
  },
});
const modelDir = values.model ?? 'test/fixtures/tiny-llava-llama';

async function main() {
  // The engine's process settings (V8's old-space floor, glibc's huge pages) take effect only at a start.
  await continueAsEngineProcess();
  const engine = await LlavaEngine.load(modelDir);
  const { config } = engine;
  const side = config.vision.imageSize;
  const pixels = syntheticPixels(side);
  const textIds = Array.from({ length: Number(values['text-tokens']) }, (_, i) => 1 + (i % 20));
  const ids = [...textIds.slice(0, 5), config.imageTokenId, ...textIds.slice(5)];
  const unreduced = await engine.generate(ids, [pixels], { maxNewTokens: 1, stopTokenIds: [] });
  const visionLayerMs = unreduced.timings.visionMs / config.visionLayers;
  const llmLayerMs = unreduced.timings.prefillMs / config.text.layers;
  const budget = Number(values.budget);
  const names = values.methods ? values.methods.split(',') : METHODS.map((m) => m.name);
  console.log(
    `model: ${modelDir}; ${engine.reductionShape.visualTokens} patches, budget ${budget}; ` +
      `${os.cpus().length} cores (${os.cpus()[0].model})`,
  );
  console.log(
    `mean layer time of the unreduced run: vision ${visionLayerMs.toFixed(1)} ms, LLM ` +
      `${llmLayerMs.toFixed(1)} ms\n`,
  );
  console.log(
    '| method | steps | tokens at the first step | slowest step (ms) | all steps (ms) | slowest step / ' +
      'layer beside it |',
  );
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const name of names) {
    const plan = planReduction(name, { tokens: budget }, engine.reductionShape);
    await engine.generate(ids, [pixels], { maxNewTokens: 1, stopTokenIds: [], hooks: planHooks(plan) });
    const result = await engine.generate(ids, [pixels], { maxNewTokens: 1, stopTokenIds: [], hooks: planHooks(plan) });
    if (result.steps.length === 0) {
      console.log(`| ${name} | 0 | – | – | – | – |`);
      continue;
    }
    const slowest = result.steps.reduce((a, b) => (b.ms > a.ms ? b : a));
    // The layer beside a step: a vision layer in the tower; the decoder's first beside one on the packed image.
    const layerMs = siteStage(slowest.site as HookSite) === 'tower' ? visionLayerMs : llmLayerMs;
    const total = result.steps.reduce((sum, s) => sum + s.ms, 0);
    console.log(
      `| ${name} | ${result.steps.length} | ${result.steps[0].tokensBefore} | ${slowest.ms.toFixed(2)} ` +
        `(${slowest.site}) | ${total.toFixed(2)} | ${((slowest.ms / layerMs) * 100).toFixed(1)} % |`,
    );
  }
  await engine.dispose();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
