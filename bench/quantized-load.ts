/**
 * Load time, resident memory and speed of the CPU path for a TinyLLaVA-shaped model (CLIP-L/336 +
 * TinyLlama-1.1B, random F32 weights) with the decoder's weights as stored, int8 (held twice, and once as when memory
 * is short) and int4. Each load runs in a fresh process; "first load" includes quantizing and writing the
 * cache, "cached" reads it. Then `--pairs` interleaved pairs time int8's decode held twice against once.
 *
 *   node --import tsx bench/quantized-load.ts [--dir $TMPDIR/ficoco-bench/tinyllava-clip-tinyllama-f32] [--pairs 5] >
 * bench/results/quantized-load.md
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { machineLine, median, peakResidentMiB, syntheticPixels } from '../src/cli/benchTiming';
import { LlavaEngine } from '../src/engine/engine';
import { WeightQuantization } from '../src/common/quantization';
import { INT4_BLOCK_SIZE } from '../src/engine/weights/quantize';
import { TINYLLAVA, randomModelDir, writeRandomModel } from './randomModel';
import { continueAsEngineProcess } from '../src/cli/engineProcess';

interface Probe {
  loadMs: number;
  rssMiB: number;
  peakMiB: number;
  visionMs: number;
  prefillMs: number;
  decodeTokensPerSecond: number;
}

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: randomModelDir(TINYLLAVA) },
    probe: { type: 'string' },
    threads: { type: 'string' },
    pairs: { type: 'string', default: '5' },
  },
});

/** The memory the "memory short" row says is available: below int8's two forms of the decoder, above one. */
const SHORT_MEMORY = 1.5 * 2 ** 30;

/** A row's weights: a quantization, or int8 where memory is short (the decoder held in one form). */
type Variant = WeightQuantization | 'int8-short';

/** In the child: load, answer once (32 new tokens, so decode is timed over 31 steps), report. */
async function probe(dir: string, variant: Variant): Promise<void> {
  const started = performance.now();
  const engine = await LlavaEngine.load(dir, {
    quantization: variant === 'int8-short' ? 'int8' : variant,
    provider: 'cpu',
    ...(variant === 'int8-short' ? { availableMemory: () => SHORT_MEMORY } : {}),
    ...(values.threads ? { threads: Number(values.threads) } : {}),
  });
  const loadMs = performance.now() - started;
  const rssMiB = process.memoryUsage().rss / 2 ** 20;
  const side = engine.config.vision.imageSize;
  const pixels = syntheticPixels(side);
  const ids = [1, 5, 6, engine.config.imageTokenId, ...Array.from({ length: 16 }, (_, i) => 10 + i)];
  const result = await engine.generate(ids, [pixels], { maxNewTokens: 32, stopTokenIds: [] });
  const peakMiB = peakResidentMiB();
  const report: Probe = {
    loadMs,
    rssMiB,
    peakMiB,
    visionMs: result.timings.visionMs,
    prefillMs: result.timings.prefillMs,
    decodeTokensPerSecond: ((result.tokenIds.length - 1) * 1000) / result.timings.decodeMs,
  };
  process.stdout.write(JSON.stringify(report));
  await engine.dispose();
}

function run(dir: string, variant: Variant): Probe {
  const output = execFileSync(
    process.execPath,
    [
      '--import',
      'tsx',
      __filename,
      '--dir',
      dir,
      '--probe',
      variant,
      ...(values.threads ? ['--threads', values.threads] : []),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  return JSON.parse(output) as Probe;
}

/** int8 decode with the decoder held twice against once, in fresh processes taking turns: rates swing here. */
function oneFormPairs(dir: string, pairs: number): string[] {
  const rates: Record<'int8' | 'int8-short', number[]> = { int8: [], 'int8-short': [] };
  for (let pair = 0; pair < pairs; pair++)
    for (const variant of ['int8', 'int8-short'] as const) {
      const p = run(dir, variant);
      process.stderr.write(`pair ${pair + 1} ${variant}: ${JSON.stringify(p)}\n`);
      rates[variant].push(p.decodeTokensPerSecond);
    }
  const [both, once] = [median(rates.int8), median(rates['int8-short'])];
  const list = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  return [
    `int8 decode tokens/s, ${pairs} pairs of cached loads taking turns: the decoder held twice ${list(rates.int8)} ` +
      `(median ${both.toFixed(2)}), held once ${list(rates['int8-short'])} (median ${once.toFixed(2)}); ` +
      `once ÷ twice ${(once / both).toFixed(2)}.`,
    '',
  ];
}

async function main(): Promise<void> {
  // The engine's process settings (V8's old-space floor, glibc's huge pages) take effect only at a start.
  await continueAsEngineProcess();
  if (values.probe) return probe(values.dir!, values.probe as Variant);
  const dir = values.dir!;
  const writeStarted = performance.now();
  writeRandomModel(TINYLLAVA, dir, 'F32');
  process.stderr.write(`model ready in ${((performance.now() - writeStarted) / 1000).toFixed(0)} s: ${dir}\n`);
  for (const file of fs.readdirSync(dir)) if (file.endsWith('.quantized')) fs.rmSync(path.join(dir, file));
  const weightsBytes = fs.statSync(path.join(dir, 'model.safetensors')).size;
  const rows: string[] = [];
  const label: Record<Variant, string> = {
    none: 'F32 (none)',
    int8: 'int8',
    int4: 'int4',
    'int8-short': `int8, ${(SHORT_MEMORY / 2 ** 30).toFixed(1)} GiB available (decoder held once)`,
  };
  for (const variant of ['none', 'int8', 'int8-short', 'int4'] as const) {
    const loads =
      variant === 'none'
        ? [['as stored', run(dir, variant)] as const]
        : variant === 'int8-short'
          ? [['cached', run(dir, variant)] as const]
          : [['first load', run(dir, variant)] as const, ['cached', run(dir, variant)] as const];
    const mode = variant === 'int8-short' ? 'int8' : variant;
    const cache = fs.readdirSync(dir).find((file) => file.startsWith(`ficoco-${mode}-`));
    for (const [when, p] of loads) {
      process.stderr.write(`${variant} ${when}: ${JSON.stringify(p)}\n`);
      rows.push(
        `| ${label[variant]} | ${when} | ${(p.loadMs / 1000).toFixed(1)} s | ${(p.rssMiB / 1024).toFixed(2)} GiB | ${(p.peakMiB / 1024).toFixed(2)} GiB | ${cache ? `${(fs.statSync(path.join(dir, cache)).size / 2 ** 30).toFixed(2)} GiB` : '–'} | ${(p.visionMs / 1000).toFixed(2)} s | ${(p.prefillMs / 1000).toFixed(2)} s | ${p.decodeTokensPerSecond.toFixed(2)} |`,
      );
    }
  }
  process.stdout.write(
    [
      '# Weight quantization: load time, memory and speed (CPU)',
      '',
      `${TINYLLAVA.label} with random F32 weights (${(weightsBytes / 2 ** 30).toFixed(2)} GiB ` +
        `model.safetensors); the decoder's linear layers and LM head quantized by FiCoCo at load time, and the ` +
        `vision tower's linear layers (int8: one scale per output channel, each token's activations quantized to 8 ` +
        `bits with its own zero point, MatMulInteger, a decode step's one row in MatMulNBits' 8-bit kernel, the ` +
        `same codes cached in both layouts; where the memory available at load cannot hold both, decode steps in ` +
        `MatMulInteger too and the decoder held once; int4: ` +
        `MatMulNBits, blocks of ${INT4_BLOCK_SIZE} with a zero point each, accuracy level 4, the vision tower in int8 as above); ` +
        `embeddings, norms and the projector stay F32.`,
      `One image (576 visual tokens) + 19 text tokens, 32 new tokens. ${machineLine('cpu', values.threads ? Number(values.threads) : undefined)} Each row is a fresh ` +
        `process; \`npm run bench:quantized\`.`,
      '',
      '| weights | load | load time | resident after load | peak resident | cache file | vision | ' +
        'LLM prefill | decode tokens/s |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
      ...oneFormPairs(dir, Number(values.pairs)),
    ].join('\n'),
  );
}

void main();
