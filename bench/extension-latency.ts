/**
 * What a user of the extension waits for, on the built-in model through the real engine process
 * (dist/host.js forked by the extension's EngineClient): the engine's cold start with and without the warm-up
 * the extension asks for at load, the first reduced answer after each (FiCoCo-V keeping 16 of 144 tokens, the e2e
 * suite's setting), and the status bar's speedup as the extension measures it (speedup.ts: paired warm prefills,
 * median) — for that setting several times over, to show its spread, and for every method at one budget. What the
 * default `auto` chooses is said too. Ratios come from one run; run `npm run build` first (npm run bench:extension
 * does).
 *
 *   node --import tsx bench/extension-latency.ts [--budget 16] [--measurements 5]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { median } from '../src/cli/benchTiming';
import { AUTO_METHOD, NO_REDUCTION, type ReductionRequest } from '../src/common/reductionChoice';
import { type AskOptions, EngineClient } from '../src/client/engineClient';
import { type PrefillRun, measureSpeedup, prefillMs } from '../src/extension/speedup';
import { findBuiltinModel } from '../src/hub/presets';
import type { LoadParams } from '../src/protocol/engine';
import type { SpeedupView } from '../src/protocol/webview';
import { METHODS } from '../src/reduction/registry';

const { values } = parseArgs({
  options: { budget: { type: 'string', default: '16' }, measurements: { type: 'string', default: '5' } },
});
const ROOT = path.resolve(__dirname, '..');
const HOST = path.join(ROOT, 'dist', 'host.js');
const COLD_STARTS = 3;
const AUTO: ReductionRequest = { method: AUTO_METHOD, params: {} };
const REDUCED: ReductionRequest = { method: 'ficoco-v', budget: { tokens: 16 }, params: {} };

async function main() {
  const modelDir = findBuiltinModel(__dirname);
  if (!modelDir) throw new Error('needs the built-in model at models/tiny-llava-screens');
  if (!fs.existsSync(HOST)) throw new Error(`needs ${HOST}: run npm run build`);
  const budget = Number(values.budget);
  const measurements = Number(values.measurements);
  const image = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000001.png');
  const question: AskOptions = {
    question: 'what is the title ?',
    images: [{ name: path.basename(image), dataBase64: fs.readFileSync(image).toString('base64') }],
    maxNewTokens: 8,
    temperature: 0,
    topP: 1,
    seed: 0,
  };
  const model: LoadParams = { modelDir, provider: 'cpu' };

  // Cold starts alternate between a load without warm-up and one with it, so drift hits both alike.
  const starts = { cold: [] as FirstAnswer[], warmed: [] as FirstAnswer[] };
  for (let i = 0; i < COLD_STARTS; i++) {
    starts.cold.push(await firstAnswer(model, question));
    starts.warmed.push(await firstAnswer({ ...model, warmUp: REDUCED }, question));
  }

  const client = new EngineClient({ hostModule: HOST });
  const speedupOf = async (reduction: ReductionRequest): Promise<SpeedupView> => {
    const run: PrefillRun = async (reduced) =>
      prefillMs(
        (
          await client.ask(
            model,
            { ...question, maxNewTokens: 1, ...(reduced ? { reduction } : {}) },
            { text: () => undefined },
          )
        ).stats,
      );
    return (await measureSpeedup(run, 'prefill on cpu'))!;
  };
  const { stats } = await client.ask(model, { ...question, reduction: AUTO }, { text: () => undefined });
  const repeated: SpeedupView[] = [];
  for (let i = 0; i < measurements; i++) repeated.push(await speedupOf(REDUCED));
  const methods: [string, SpeedupView][] = [];
  for (const method of METHODS)
    methods.push([method.name, await speedupOf({ method: method.name, budget: { tokens: budget }, params: {} })]);
  client.dispose();

  const ms = (xs: number[]) => `${median(xs).toFixed(0)} ms | ${xs.map((x) => x.toFixed(0)).join(', ')}`;
  const ratios = repeated.map((s) => s.ratio);
  console.log(`# Extension latency on the built-in model\n`);
  console.log(
    `${os.cpus().length} cores (${os.cpus()[0].model}), CPU provider, engine process dist/host.js; one ` +
      `run of \`npm run bench:extension\`.\n`,
  );
  console.log('| figure | median | runs |');
  console.log('|---|---:|---|');
  console.log(`| engine cold start: fork → model loaded | ${ms(starts.cold.map((s) => s.loadMs))} |`);
  console.log(`| … with the warm-up the extension asks for | ${ms(starts.warmed.map((s) => s.loadMs))} |`);
  console.log(
    `| first answer (ficoco-v 16) after a load without warm-up | ${ms(starts.cold.map((s) => s.answerMs))} |`,
  );
  console.log(`| first answer (ficoco-v 16) after the warm-up | ${ms(starts.warmed.map((s) => s.answerMs))} |`);
  console.log(`| … its prefill (vision + LLM), without warm-up | ${ms(starts.cold.map((s) => s.prefillMs))} |`);
  console.log(`| … its prefill, after the warm-up | ${ms(starts.warmed.map((s) => s.prefillMs))} |`);
  const chosen = stats.reduction;
  const setting = !chosen || chosen.method === NO_REDUCTION ? 'every token' : `${chosen.method} ${chosen.budget}`;
  console.log(`\nThe default, \`auto\`, chooses ${setting} (${chosen?.rule} rule): ${chosen?.why}\n`);
  console.log(
    `The status bar's figure for ficoco-v 16, measured ${measurements} times as the extension does after an answer ` +
      `(one warm-up of each side, then paired prefills, median): ` +
      `${repeated.map((s) => `${s.ratio.toFixed(2)}× (${s.verdict}, ${s.pairs} pairs)`).join(', ')}; spread ` +
      `(max/min) ${(Math.max(...ratios) / Math.min(...ratios)).toFixed(2)}×.\n`,
  );
  console.log(`Every method at ${budget} of 144 visual tokens, measured the same way:\n`);
  console.log('| method | speedup | middle half | pairs | the chat says |');
  console.log('|---|---:|---:|---:|---|');
  for (const [name, s] of methods)
    console.log(
      `| ${name} | ${s.ratio.toFixed(2)}× | ${s.low.toFixed(2)}–${s.high.toFixed(2)}× | ${s.pairs} | ${s.label} |`,
    );
}

interface FirstAnswer {
  loadMs: number;
  answerMs: number;
  prefillMs: number;
}

/** A fresh engine process: its load (with the warm-up `model` asks for), then one ficoco-v 16 answer. */
async function firstAnswer(model: LoadParams, question: AskOptions): Promise<FirstAnswer> {
  const client = new EngineClient({ hostModule: HOST });
  try {
    const forked = performance.now();
    await client.load(model);
    const loadMs = performance.now() - forked;
    const asked = performance.now();
    const { stats } = await client.ask(model, { ...question, reduction: REDUCED }, { text: () => undefined });
    return { loadMs, answerMs: performance.now() - asked, prefillMs: prefillMs(stats) };
  } finally {
    client.dispose();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
