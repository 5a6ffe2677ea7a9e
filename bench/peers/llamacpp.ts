/**
 * Our decoder against llama.cpp (node-llama-cpp's prebuilt CPU build) on the same random TinyLlama-1.1B weights:
 * LLM prefill of a text prompt, then decode tokens/s, at several context lengths and precisions (F32 / F32,
 * int8 / Q8_0, int4 / Q4_0). Both engines stay loaded and alternate (ours, llama.cpp, llama.cpp, ours, …), one
 * warm-up each, medians of --runs; load average and CPU steal are logged with every sample.
 *
 * Before timing, both engines score the next token after one prompt at F32: the same log-probabilities show that the
 * GGUF is the same model. `--check` does only that and prints the largest difference as JSON.
 *
 *   npm ci --prefix bench/peers
 *   node --import tsx bench/peers/llamacpp.ts [--model DIR] [--contexts 104,616,2048] [--new-tokens 64] [--runs 3]
 *       [--threads 2] [--precisions f32,int8,int4] [--out bench/results/peer-llamacpp.md] [--check]
 *       [--gguf-dir $TMPDIR/ficoco-bench/gguf]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { cpuTicks, machineLine, median } from '../../src/cli/benchTiming';
import { WeightQuantization } from '../../src/common/quantization';
import { LlavaEngine } from '../../src/engine/engine';
import type { Token } from 'node-llama-cpp';
import type { GgmlType } from '../../tools/ggufWriter';
import { TINYLLAVA, randomModelDir, writeRandomModel } from '../randomModel';
import { type LlamaShape, llamaShape, writeLlamaGguf } from './llamaGguf';
import { continueAsEngineProcess } from '../../src/cli/engineProcess';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    check: { type: 'boolean' },
    'gguf-dir': { type: 'string', default: path.join(os.tmpdir(), 'ficoco-bench', 'gguf') },
    contexts: { type: 'string', default: '104,616,2048' },
    'new-tokens': { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    precisions: { type: 'string', default: 'f32,int8,int4' },
    out: { type: 'string', default: 'bench/results/peer-llamacpp.md' },
  },
});
const contexts = values.contexts.split(',').map(Number);
const newTokens = Number(values['new-tokens']);
const runs = Number(values.runs);
const threads = Number(values.threads);

/** Our weight quantization and the GGUF type that matches it. */
const PRECISIONS: Record<string, { ours: WeightQuantization; gguf: GgmlType }> = {
  f32: { ours: 'none', gguf: 'F32' },
  int8: { ours: 'int8', gguf: 'Q8_0' },
  int4: { ours: 'int4', gguf: 'Q4_0' },
};

interface Sample {
  prefillMs: number;
  decodeTokensPerSecond: number;
  loadAverage: number;
  stealShare: number;
}

interface Run {
  tokenIds: number[];
  prefillMs: number;
  /** from the first generated token to the last */
  decodeMs: number;
}

/** `count` greedy tokens after `ids`, timed. */
type Generate = (ids: number[], count: number) => Promise<Run>;

/** The next token's log-probabilities over the vocabulary after `ids`. */
type NextLogProbs = (ids: number[]) => Promise<Float64Array>;

/** Prompt tokens of the F32 agreement check. */
const CHECK_TOKENS = 40;
/** what node-llama-cpp's context reports (it may say 'auto') */
let flashAttention: string | boolean = false;

/** Prompt ids of ordinary pieces (past the control and byte tokens), the same for both engines. */
const promptIds = (count: number, vocab: number) =>
  Array.from({ length: count }, (_, i) => 300 + ((i * 7919) % (vocab - 300)));

async function sample(run: () => Promise<Run>): Promise<Sample> {
  const before = cpuTicks();
  const timed = await run();
  const after = cpuTicks();
  return {
    prefillMs: timed.prefillMs,
    decodeTokensPerSecond: ((timed.tokenIds.length - 1) * 1000) / timed.decodeMs,
    loadAverage: os.loadavg()[0],
    stealShare: before && after ? (after.steal - before.steal) / Math.max(1, after.total - before.total) : Number.NaN,
  };
}

/** The GGUF of `modelDir`'s decoder in `type`, written into --gguf-dir once. */
function ggufOf(modelDir: string, shape: LlamaShape, type: GgmlType): string {
  const file = path.join(values['gguf-dir'], `${path.basename(modelDir)}-llm-${type}.gguf`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(values['gguf-dir'], { recursive: true });
    writeLlamaGguf(modelDir, shape, type, `${file}.partial`);
    fs.renameSync(`${file}.partial`, file);
  }
  return file;
}

async function main() {
  // The engine's process settings (V8's old-space floor, glibc's huge pages) take effect only at a start.
  await continueAsEngineProcess();
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const modelDir = values.model ?? writeRandomModel(TINYLLAVA, randomModelDir(TINYLLAVA), 'F32');
  const shape = llamaShape(JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8')));
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const log = (line: string) => process.stderr.write(`${line}\n`);

  /** Both engines at one precision; `measure` runs while they are loaded. */
  const withEngines = async <T>(
    precision: { ours: WeightQuantization; gguf: GgmlType },
    contextSize: number,
    measure: (engines: Record<'ours' | 'peer', Generate>, next: Record<'ours' | 'peer', NextLogProbs>) => Promise<T>,
  ): Promise<T> => {
    const ours = await LlavaEngine.load(modelDir, { provider: 'cpu', threads, quantization: precision.ours });
    const model = await llama.loadModel({ modelPath: ggufOf(modelDir, shape, precision.gguf), gpuLayers: 0 });
    const context = await model.createContext({ contextSize, threads: { ideal: threads, min: threads } });
    flashAttention = context.flashAttention;
    const sequence = context.getSequence();
    const runPeer: Generate = async (ids, count) => {
      await sequence.clearHistory();
      const started = performance.now();
      const tokens = sequence.evaluate(ids as Token[], { temperature: 0 });
      const generated: number[] = [];
      let first = started;
      for (let i = 0; i < count; i++) {
        const next = await tokens.next();
        if (next.done) throw new Error('llama.cpp stopped generating');
        generated.push(next.value);
        if (i === 0) first = performance.now();
      }
      const last = performance.now();
      await tokens.return();
      return { tokenIds: generated, prefillMs: first - started, decodeMs: last - first };
    };
    const runOurs: Generate = async (ids, count) => {
      const result = await ours.generate(ids, [], { maxNewTokens: count, stopTokenIds: [] });
      return { tokenIds: result.tokenIds, prefillMs: result.timings.prefillMs, decodeMs: result.timings.decodeMs };
    };
    const nextOurs: NextLogProbs = async (ids) => {
      const logits = (await ours.generate(ids, [], { maxNewTokens: 1, stopTokenIds: [] })).prefillLogits;
      const top = logits.reduce((m, x) => Math.max(m, x), -Infinity);
      const logSum = Math.log(logits.reduce((sum, x) => sum + Math.exp(x - top), 0)) + top;
      return Float64Array.from(logits, (x) => x - logSum);
    };
    const nextPeer: NextLogProbs = async (ids) => {
      await sequence.clearHistory();
      const tokens = sequence.evaluateWithMetadata(ids as Token[], { probabilities: true }, { temperature: 0 });
      const first = await tokens.next();
      await tokens.return();
      if (first.done) throw new Error('llama.cpp stopped generating');
      const logProbs = new Float64Array(shape.vocab).fill(-Infinity);
      for (const [token, p] of first.value.probabilities) logProbs[token] = Math.log(p);
      return logProbs;
    };
    try {
      return await measure({ ours: runOurs, peer: runPeer }, { ours: nextOurs, peer: nextPeer });
    } finally {
      await context.dispose();
      await model.dispose();
      await ours.dispose();
    }
  };

  const checkIds = promptIds(CHECK_TOKENS, shape.vocab);
  const check = await withEngines(PRECISIONS.f32, 64, async (_, next) => {
    const [ours, peer] = [await next.ours(checkIds), await next.peer(checkIds)];
    const argmax = (logProbs: Float64Array) => logProbs.indexOf(Math.max(...logProbs));
    return {
      maxLogProbDifference: ours.reduce((m, x, i) => Math.max(m, Math.abs(x - peer[i])), 0),
      logProbSpread: Math.max(...ours) - Math.min(...ours),
      argmax: { ours: argmax(ours), peer: argmax(peer) },
    };
  });
  if (values.check) {
    process.stdout.write(`${JSON.stringify(check)}\n`);
    return;
  }
  const lines: string[] = [];
  for (const name of values.precisions.split(',')) {
    const precision = PRECISIONS[name];
    if (!precision) throw new Error(`--precisions ${name}: one of ${Object.keys(PRECISIONS).join(', ')}`);
    await withEngines(precision, Math.max(...contexts) + newTokens + 16, async (engines) => {
      for (const length of contexts) {
        const ids = promptIds(length, shape.vocab);
        const samples = { ours: [] as Sample[], peer: [] as Sample[] };
        await engines.ours(ids, newTokens + 1);
        await engines.peer(ids, newTokens + 1);
        for (let round = 0; round < runs; round++) {
          // Alternate which engine goes first, so a slow phase of the machine does not always fall on one of them.
          const order = round % 2 === 0 ? (['ours', 'peer'] as const) : (['peer', 'ours'] as const);
          for (const who of order) {
            const measured = await sample(() => engines[who](ids, newTokens + 1));
            samples[who].push(measured);
            log(
              `${name} ${length} ${who}: prefill ${measured.prefillMs.toFixed(0)} ms, decode ` +
                `${measured.decodeTokensPerSecond.toFixed(2)} tok/s, load ${measured.loadAverage.toFixed(2)}, ` +
                `steal ${(100 * measured.stealShare).toFixed(1)} %`,
            );
          }
        }
        lines.push(row(`${name} / ${precision.gguf}`, length, samples.ours, samples.peer));
      }
    });
  }
  const report = [
    '# Ours against llama.cpp: LLM prefill and decode',
    '',
    `\`${['node --import tsx bench/peers/llamacpp.ts', ...process.argv.slice(2)].join(' ')}\` (after \`npm ci ` +
      '--prefix bench/peers`)',
    '',
    `TinyLlama-1.1B shapes (${shape.layers} layers, hidden ${shape.hidden}, ${shape.heads} heads, ${shape.kvHeads} ` +
      `KV heads, vocabulary ${shape.vocab}), random weights from bench/randomModel.ts; llama.cpp reads the same ` +
      `weights as GGUF (bench/peers/llamaGguf.ts: every matrix, the output layer included, in the GGUF type; norms ` +
      `F32). At F32 the two engines' next-token log-probabilities after a ${CHECK_TOKENS}-token prompt differ by at ` +
      `most ${check.maxLogProbDifference.toExponential(1)} (they spread over ${check.logProbSpread.toFixed(2)}). A text prompt of ` +
      `each context length, then ${newTokens} greedy tokens; ${threads} threads each. llama.cpp through ` +
      `node-llama-cpp 3.21.1's prebuilt CPU binary, its default batch size, flash attention ` +
      `${flashAttention === true ? 'on' : flashAttention === false ? 'off' : flashAttention}. Both engines loaded in ` +
      `one process, GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES ?? '(none)'} (as our engine's processes start; ` +
      `llama.cpp's weights are its file, mapped); one warm-up each per row, then ${runs} rounds ` +
      'alternating which goes first; medians. Ratios divide medians of the same rows. Load average (1 min) and CPU ' +
      `steal are the ranges over the row's samples. ${machineLine('cpu', threads)}`,
    '',
    '| ours / llama.cpp | context tokens | prefill ms, ours | llama.cpp | llama.cpp ÷ ours | decode tok/s, ours | ' +
      'llama.cpp | ours ÷ llama.cpp | load average | CPU steal |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...lines,
    '',
  ].join('\n');
  fs.mkdirSync(path.dirname(values.out), { recursive: true });
  fs.writeFileSync(values.out, report);
  process.stdout.write(report);
}

function row(precision: string, length: number, ours: Sample[], peer: Sample[]): string {
  const of = (samples: Sample[], key: 'prefillMs' | 'decodeTokensPerSecond') => median(samples.map((s) => s[key]));
  const range = (key: 'loadAverage' | 'stealShare', scale: number, digits: number) => {
    const all = [...ours, ...peer].map((s) => s[key] * scale);
    return `${Math.min(...all).toFixed(digits)}–${Math.max(...all).toFixed(digits)}`;
  };
  const [prefillOurs, prefillPeer] = [of(ours, 'prefillMs'), of(peer, 'prefillMs')];
  const [decodeOurs, decodePeer] = [of(ours, 'decodeTokensPerSecond'), of(peer, 'decodeTokensPerSecond')];
  return (
    `| ${precision} | ${length} | ${prefillOurs.toFixed(0)} | ${prefillPeer.toFixed(0)} | ` +
    `${(prefillPeer / prefillOurs).toFixed(2)}× | ${decodeOurs.toFixed(2)} | ${decodePeer.toFixed(2)} | ` +
    `${(decodeOurs / decodePeer).toFixed(2)}× | ${range('loadAverage', 1, 2)} | ${range('stealShare', 100, 1)} % |`
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
