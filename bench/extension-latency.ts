/**
 * What a user of the extension waits for, on the built-in model through the real engine process
 * (dist/host.js forked by the extension's EngineClient): the engine's cold start, the first answer, and the
 * warm prefill of every reduction method against the unreduced prefill, as the status bar measures it.
 * Ratios come from one run; run `npm run build` first (npm run bench:extension does).
 *
 *   node --import tsx bench/extension-latency.ts [--budget 16] [--repeats 7]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { median } from '../src/cli/benchTiming';
import { findBuiltinModel } from '../src/hub/presets';
import { type AskOptions, EngineClient } from '../src/extension/engineClient';
import { prefillMs } from '../src/extension/speedup';
import { METHODS } from '../src/reduction/registry';

const { values } = parseArgs({
  options: { budget: { type: 'string', default: '16' }, repeats: { type: 'string', default: '7' } },
});
const ROOT = path.resolve(__dirname, '..');
const HOST = path.join(ROOT, 'dist', 'host.js');
const COLD_STARTS = 3;

async function main() {
  const modelDir = findBuiltinModel(__dirname);
  if (!modelDir) throw new Error('needs the built-in model at models/tiny-llava-screens');
  if (!fs.existsSync(HOST)) throw new Error(`needs ${HOST}: run npm run build`);
  const budget = Number(values.budget);
  const repeats = Number(values.repeats);
  const image = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000001.png');
  const question: AskOptions = {
    question: 'what is the title ?',
    images: [{ name: path.basename(image), dataBase64: fs.readFileSync(image).toString('base64') }],
    maxNewTokens: 8,
    temperature: 0,
    topP: 1,
    seed: 0,
  };
  const model = { modelDir, provider: 'cpu' as const };
  const reduced = (method: string): AskOptions => ({
    ...question,
    reduction: { method, budget: { tokens: budget }, params: {} },
  });

  const coldStarts: number[] = [];
  const firstAnswers: number[] = [];
  for (let i = 0; i < COLD_STARTS; i++) {
    const client = new EngineClient({ hostModule: HOST });
    const forked = performance.now();
    await client.load(model);
    coldStarts.push(performance.now() - forked);
    const asked = performance.now();
    await client.ask(model, reduced('ficoco-v'), () => undefined);
    firstAnswers.push(performance.now() - asked);
    client.dispose();
  }

  const client = new EngineClient({ hostModule: HOST });
  const warmPrefill = async (options: AskOptions) => {
    await client.ask(model, options, () => undefined);
    const runs: number[] = [];
    for (let i = 0; i < repeats; i++)
      runs.push(prefillMs((await client.ask(model, { ...options, maxNewTokens: 1 }, () => undefined)).stats));
    return median(runs);
  };
  const unreduced = await warmPrefill(question);
  const rows: string[] = [];
  for (const method of METHODS) {
    const ms = await warmPrefill(reduced(method.name));
    rows.push(`| ${method.name} | ${ms.toFixed(1)} | ${(unreduced / ms).toFixed(2)}× |`);
  }
  client.dispose();

  console.log(`# Extension latency on the built-in model\n`);
  console.log(
    `${os.cpus().length} cores (${os.cpus()[0].model}), CPU provider, engine process dist/host.js; one ` +
      `run of \`npm run bench:extension\`.\n`,
  );
  console.log('| figure | median | runs |');
  console.log('|---|---:|---|');
  console.log(
    `| engine cold start: fork → model loaded | ${median(coldStarts).toFixed(0)} ms | ` +
      `${coldStarts.map((ms) => ms.toFixed(0)).join(', ')} |`,
  );
  console.log(
    `| first answer after the load (ficoco-v ${budget}, includes the first run's warm-up) | ` +
      `${median(firstAnswers).toFixed(0)} ms | ${firstAnswers.map((ms) => ms.toFixed(0)).join(', ')} |`,
  );
  console.log(
    `\nWarm prefill (vision + LLM prefill, median of ${repeats}) at ${budget} visual tokens against ` +
      `every one of 144 — the status bar's speedup:\n`,
  );
  console.log('| method | prefill ms | speedup |');
  console.log('|---|---:|---:|');
  console.log(`| none (144 tokens) | ${unreduced.toFixed(1)} | 1.00× |`);
  for (const row of rows) console.log(row);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
