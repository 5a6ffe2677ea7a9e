/**
 * `ficoco bench` on full-size architectures with random weights (bench/randomModel.ts), where the shapes are
 * what costs: CLIP-L/336 + TinyLlama-1.1B, SigLIP-so400m/384 + Qwen2-0.5B (one LLaVA-OneVision tile, no
 * class token), or LLaVA-1.5-7B's shapes with the decoder cut to --layers of its 32 to fit memory; the cut
 * model's LLM milliseconds and FLOPs are scaled by 32 / layers and labelled so. Other options go to
 * `ficoco bench` (src/cli/bench.ts).
 *
 *   node --import tsx bench/prefill.ts [--arch tinyllava|onevision-tile|llava-7b] [--layers 4] [bench options]
 */
import { benchCommand } from '../src/cli/bench';
import { ONEVISION_TILE, TINYLLAVA, llava7b, randomModelDir, writeRandomModel } from './randomModel';

let archName = 'tinyllava';
let layers = 4;
const passed: string[] = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--arch') archName = process.argv[++i];
  else if (process.argv[i] === '--layers') layers = Number(process.argv[++i]);
  else passed.push(process.argv[i]);
}
const arch = archName === 'llava-7b' ? llava7b(layers) : archName === 'onevision-tile' ? ONEVISION_TILE : TINYLLAVA;
const modelDir = writeRandomModel(arch, randomModelDir(arch), 'F32');
const scale = archName === 'llava-7b' ? ['--llm-scale', String(32 / layers)] : [];
void benchCommand([
  '--model',
  modelDir,
  '--label',
  `${arch.label}, random F32 weights (bench/prefill.ts)`,
  '--name',
  `prefill-${arch.name}`,
  ...scale,
  ...passed,
]).then((code) => (process.exitCode = code));
