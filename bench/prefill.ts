/**
 * `ficoco bench` on full-size architectures with random weights (bench/randomModel.ts), where the shapes are
 * what costs: CLIP-L/336 + TinyLlama-1.1B, SigLIP-so400m/384 + Qwen2-0.5B (one LLaVA-OneVision tile, no
 * class token), LLaVA-1.5-7B's shapes with the decoder cut to --layers of its 32 to fit memory (the cut
 * model's LLM milliseconds and FLOPs are scaled by 32 / layers and labelled so), or the tiled LLaVA-OneVision-0.5B
 * and LLaVA-NeXT-Mistral-7B (cut the same way) on a synthetic screenshot of --image-size, or the built-in model's
 * widths tiled as LLaVA-OneVision (builtin-anyres). Other options go to `ficoco bench` (src/cli/bench.ts), run from
 * the bundle (`dist/cli.js`; `npm run build` first): the figures are the shipped code's, not tsx's transform of it.
 *
 *   node --import tsx bench/prefill.ts [--arch tinyllava|onevision-tile|llava-7b|onevision-0.5b|llava-next-7b|builtin-anyres]
 *       [--layers 4] [bench options]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runNode } from '../src/cli/engineProcess';
import { randomArchitecture, randomModelDir, writeRandomModel } from './randomModel';

const ROOT = path.join(__dirname, '..');
const BUNDLED_CLI = path.join(ROOT, 'dist', 'cli.js');

/** The newest modification time of the files under a folder, in ms. */
function newestChange(folder: string): number {
  return fs
    .readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .reduce((newest, entry) => Math.max(newest, fs.statSync(path.join(entry.parentPath, entry.name)).mtimeMs), 0);
}

async function main(): Promise<number> {
  const built = fs.existsSync(BUNDLED_CLI) ? fs.statSync(BUNDLED_CLI).mtimeMs : undefined;
  if (built === undefined || built < newestChange(path.join(ROOT, 'src')))
    throw new Error(`${built === undefined ? 'no' : 'an outdated'} dist/cli.js: run \`npm run build\` first`);
  let archName = 'tinyllava';
  let layers = 4;
  const passed: string[] = [];
  for (let i = 2; i < process.argv.length; i++) {
    if (process.argv[i] === '--arch') archName = process.argv[++i];
    else if (process.argv[i] === '--layers') layers = Number(process.argv[++i]);
    else passed.push(process.argv[i]);
  }
  const arch = randomArchitecture(archName, layers);
  const modelDir = writeRandomModel(arch, randomModelDir(arch), 'F32');
  const cut = archName === 'llava-7b' || archName === 'llava-next-7b';
  const scale = cut ? ['--llm-scale', String(32 / layers)] : [];
  // The CLI gives itself V8's old-space floor, without which hundreds of prefills drift (docs/benchmarks.md).
  return runNode([
    BUNDLED_CLI,
    'bench',
    '--model',
    modelDir,
    '--label',
    `${arch.label}, random F32 weights (bench/prefill.ts)`,
    '--name',
    `prefill-${arch.name}`,
    ...scale,
    ...passed,
  ]);
}

main().then(
  (code) => (process.exitCode = code),
  (error: Error) => {
    console.error(`bench/prefill.ts: ${error.message}`);
    process.exitCode = 1;
  },
);
