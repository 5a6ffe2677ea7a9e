/**
 * A GPU check a user can run and attach to a bug report (bench/gpu-check.sh runs it under a 10-minute limit).
 *
 * 1. Parity: every test fixture with a PyTorch reference (test/fixtures/<model>/reference.json), on the GPU provider
 *    and on the CPU, unreduced and with FiCoCo-V at half the visual tokens: the largest logit difference, whether
 *    the greedy tokens and the reduction's kept patches are the same.
 * 2. Speed: LLaVA-1.5-7B shapes with random F16 weights (the decoder cut to fit two engines in the GPU's free
 *    memory, its milliseconds scaled to 32 layers) through `ficoco bench`: prefill unreduced and with FiCoCo-V at
 *    192, 128 and 64 tokens, decode tokens/s, and this process's peak GPU memory (nvidia-smi).
 *
 *   node --import tsx bench/gpu-check.ts [--provider cuda] [--precision auto|float32|float16] [--layers N]
 *       [--model DIR --budgets a,b,c] [--runs 3] [--decode 32] [--out gpu-check] [--name gpu-check]
 *
 * Exit status: 0 when every parity row passes, 1 when one does not, 2 when the provider did not load.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { benchCommand } from '../src/cli/bench';
import { machineLine } from '../src/cli/benchTiming';
import { rerunAsEngineProcess } from '../src/cli/engineProcess';
import { providerReport } from '../src/cli/providers';
import { GenerationResult, LlavaEngine } from '../src/engine/engine';
import { ElemType } from '../src/engine/graph/builder';
import { PROVIDERS, type Precision, type ProviderName, computeTypeFor } from '../src/engine/runtime/provider';
import { WeightIndex } from '../src/engine/weights/safetensors';
import { randomModelDir, llava7b, weightBytes, writeRandomModel } from './randomModel';

const ROOT = path.join(__dirname, '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
/** float32 graphs match PyTorch to 1e-3 (test/integration/engine-parity.test.ts); float16 ones to 0.3 there */
const TOLERANCE: Record<'float32' | 'float16', number> = { float32: 1e-3, float16: 0.3 };
const PARITY_TOKENS = 5;

const { values } = parseArgs({
  options: {
    provider: { type: 'string', default: 'cuda' },
    precision: { type: 'string', default: 'auto' },
    layers: { type: 'string' },
    model: { type: 'string' },
    budgets: { type: 'string', default: '192,128,64' },
    runs: { type: 'string', default: '3' },
    decode: { type: 'string', default: '32' },
    out: { type: 'string', default: 'gpu-check' },
    name: { type: 'string', default: 'gpu-check' },
  },
});
const provider = values.provider as ProviderName;
if (!PROVIDERS.includes(provider)) throw new Error(`--provider ${values.provider}: one of ${PROVIDERS.join(', ')}`);
if (!['auto', 'float32', 'float16'].includes(values.precision))
  throw new Error(`--precision ${values.precision}: auto, float32 or float16`);
const precision = values.precision as Precision;
const reportFile = path.join(values.out, `${values.name}.md`);
const computeType = computeTypeFor(provider, precision) === ElemType.float16 ? 'float16' : 'float32';

interface ReferenceCase {
  image: string;
  input_ids: number[];
}

interface ParityRow {
  fixture: string;
  item: number;
  reduction: string;
  /** largest |logit difference| of the prefill, provider against our CPU engine */
  deltaCpu: number;
  /** the same against PyTorch's logits (unreduced only: the reference has no FiCoCo-V run) */
  deltaReference?: number;
  sameTokens: boolean;
  /** where the greedy tokens part: how far apart the CPU's logits put its token and the provider's */
  partingMargin?: number;
  /** patches whose fate (kept, merged, dropped) differs between the two runs, of `patches` */
  patchesDiffering: number;
  patches: number;
  tolerance: number;
}

class ProviderNotLoaded extends Error {}

/** nvidia-smi's one-line answer to a query, or undefined where it is not installed. */
function nvidiaSmi(query: string[]): string | undefined {
  const result = spawnSync('nvidia-smi', [...query, '--format=csv,noheader,nounits'], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/** Samples this process's GPU memory every 200 ms until stopped; resolves to the peak in MiB (undefined: no nvidia-smi). */
function sampleGpuMemory(): { stop: () => Promise<number | undefined> } {
  if (nvidiaSmi(['--query-gpu=name']) === undefined) return { stop: async () => undefined };
  const child = spawn('nvidia-smi', [
    '--query-compute-apps=pid,used_memory',
    '--format=csv,noheader,nounits',
    '-lms',
    '200',
  ]);
  let peak = 0;
  let pending = '';
  child.stdout.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString()).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const [pid, mib] = line.split(',').map((field) => Number(field.trim()));
      if (pid === process.pid && mib > peak) peak = mib;
    }
  });
  return {
    stop: () =>
      new Promise((resolve) => {
        child.once('close', () => resolve(peak));
        child.kill();
      }),
  };
}

const fatesOf = (result: GenerationResult) => result.patchFates.map((fates) => fates.patches).join('');

/** Positions where two runs' patch fates differ. */
function differing(a: string, b: string): number {
  let count = Math.abs(a.length - b.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) count++;
  return count;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Every fixture's cases on the CPU and on the provider, unreduced and with FiCoCo-V at half the visual tokens. */
async function parity(): Promise<ParityRow[]> {
  const rows: ParityRow[] = [];
  const fixtures = fs
    .readdirSync(FIXTURES)
    .filter((name) => ['reference.json', 'config.json'].every((file) => fs.existsSync(path.join(FIXTURES, name, file))))
    .sort();
  for (const fixture of fixtures) {
    const dir = path.join(FIXTURES, fixture);
    const { cases } = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')) as {
      cases: ReferenceCase[];
    };
    const reference = WeightIndex.openFile(path.join(dir, 'reference.safetensors'));
    const cpu = await LlavaEngine.load(dir, { provider: 'cpu' });
    const device = await LlavaEngine.load(dir, { provider, precision });
    try {
      for (const [item, refCase] of cases.entries()) {
        const pixels = await cpu.pixelValues(fs.readFileSync(path.join(dir, refCase.image)), refCase.image);
        const reductions = [
          { label: 'none', request: undefined },
          { label: 'FiCoCo-V ½', request: { method: 'ficoco-v', budget: { ratio: 0.5 }, params: {} } },
        ];
        for (const { label, request } of reductions) {
          const run = (engine: LlavaEngine, inputIds = refCase.input_ids) =>
            engine.generate(inputIds, [pixels], {
              maxNewTokens: PARITY_TOKENS,
              stopTokenIds: [],
              hooks: request ? engine.reductionHooks(request, [pixels.size]) : [],
            });
          const onCpu = await run(cpu);
          const onDevice = await run(device);
          const parting = onCpu.tokenIds.findIndex((token, k) => token !== onDevice.tokenIds[k]);
          // The CPU's logits after the tokens both chose, at the two tokens they then chose apart.
          const partingLogits =
            parting < 0
              ? undefined
              : (await run(cpu, [...refCase.input_ids, ...onCpu.tokenIds.slice(0, parting)])).prefillLogits;
          if (device.provider !== provider)
            throw new ProviderNotLoaded(device.providerFallback ?? `${provider} did not load`);
          rows.push({
            fixture,
            item,
            reduction: label,
            deltaCpu: maxAbsDiff(onDevice.prefillLogits, onCpu.prefillLogits),
            ...(request
              ? {}
              : { deltaReference: maxAbsDiff(onDevice.prefillLogits, reference.readFloat32(`logits_${item}`)) }),
            sameTokens: parting < 0,
            ...(partingLogits
              ? {
                  partingMargin: Math.abs(
                    partingLogits[onCpu.tokenIds[parting]] - partingLogits[onDevice.tokenIds[parting]],
                  ),
                }
              : {}),
            patchesDiffering: differing(fatesOf(onDevice), fatesOf(onCpu)),
            patches: fatesOf(onCpu).length,
            tolerance: TOLERANCE[computeType],
          });
          process.stderr.write(`${fixture} #${item} ${label}: Δ ${rows[rows.length - 1].deltaCpu.toExponential(2)}\n`);
        }
      }
    } finally {
      await cpu.dispose();
      await device.dispose();
    }
  }
  return rows;
}

/**
 * A row passes with its logits in tolerance and the same greedy tokens. Half-precision scores can order two patches
 * that tie in float32 the other way: a reduced run that kept a few other patches (at most a tenth) is a near tie, whose
 * logits cannot be compared; more than that is a failure. So can two next tokens: greedy tokens that part where the
 * CPU's logits put both within the tolerance are a near tie too.
 */
function verdict(row: ParityRow): 'pass' | 'near tie' | 'FAIL' {
  if (row.patchesDiffering > 0) return row.patchesDiffering <= Math.max(2, row.patches / 10) ? 'near tie' : 'FAIL';
  const inTolerance = row.deltaCpu <= row.tolerance && (row.deltaReference ?? 0) <= row.tolerance;
  if (!inTolerance) return 'FAIL';
  if (row.sameTokens) return 'pass';
  return (row.partingMargin ?? Infinity) <= row.tolerance ? 'near tie' : 'FAIL';
}

/** yes, or where the greedy tokens part, with the CPU's logit margin between the two tokens there. */
function sameTokens(row: ParityRow): string {
  if (row.sameTokens) return 'yes';
  return row.partingMargin === undefined ? '**no**' : `**no** (CPU margin ${row.partingMargin.toExponential(1)})`;
}

function parityTable(rows: readonly ParityRow[]): string[] {
  return [
    '| fixture | case | reduction | max Δlogit vs CPU | vs PyTorch | same greedy tokens | same patch fates | |',
    '|---|---:|---|---:|---:|:---:|:---:|:---:|',
    ...rows.map(
      (row) =>
        `| ${row.fixture} | ${row.item} | ${row.reduction} | ${row.deltaCpu.toExponential(2)} | ` +
        `${row.deltaReference?.toExponential(2) ?? '–'} | ${sameTokens(row)} | ` +
        `${row.patchesDiffering === 0 ? 'yes' : `${row.patchesDiffering} of ${row.patches} differ`} | ` +
        `${verdict(row) === 'FAIL' ? '**FAIL**' : verdict(row)} |`,
    ),
  ];
}

/** Decoder layers of LLaVA-1.5-7B's 32 that fit two engines (the benchmark's reduced and unreduced) in free memory. */
function layersThatFit(): number {
  const free = nvidiaSmi(['--query-gpu=memory.free', '-i', '0']);
  // The CPU provider holds float16 weights as float32 copies: twice the file.
  const freeBytes = provider === 'cuda' && free !== undefined ? Number(free) * 2 ** 20 : os.freemem() / 2;
  const base = weightBytes(llava7b(0), 'F16');
  const perLayer = weightBytes(llava7b(1), 'F16') - base;
  // A fifth of the memory is left for activations, the KV cache and the provider's own workspace.
  return Math.max(1, Math.min(32, Math.floor((freeBytes * 0.8) / 2 / perLayer - base / perLayer)));
}

function writeReport(sections: string[]): void {
  fs.mkdirSync(values.out, { recursive: true });
  fs.writeFileSync(reportFile, `${sections.join('\n')}\n`);
}

async function main(): Promise<number> {
  // Hundreds of prefills in this process: without V8's old-space floor they drift (docs/benchmarks.md).
  const childExitCode = await rerunAsEngineProcess();
  if (childExitCode !== undefined) return childExitCode;
  const gpu = nvidiaSmi(['--query-gpu=name,driver_version,memory.total,memory.used']);
  const header = [
    '# GPU check',
    '',
    `\`bash bench/gpu-check.sh ${process.argv.slice(2).join(' ')}\``,
    '',
    `${machineLine(provider)} GPU (nvidia-smi: name, driver, MiB total, MiB used): ${gpu ?? 'nvidia-smi not found'}.`,
    '',
    '```',
    ...providerReport(),
    '```',
    '',
  ];
  let rows: ParityRow[];
  try {
    rows = await parity();
  } catch (error) {
    if (!(error instanceof ProviderNotLoaded)) throw error;
    writeReport([...header, `**The ${provider} provider did not load**: ${error.message}. Nothing was measured.`]);
    process.stderr.write(`${provider} did not load: ${error.message}\nwrote ${reportFile}\n`);
    return 2;
  }
  const failed = rows.filter((row) => verdict(row) === 'FAIL').length;
  const ties = rows.filter((row) => verdict(row) === 'near tie').length;
  const paritySection = [
    `**Parity: ${failed === 0 ? 'pass' : `${failed} of ${rows.length} rows FAIL`}` +
      `${ties > 0 ? ` (${ties} near ${ties === 1 ? 'tie' : 'ties'})` : ''}.**`,
    '',
    '## Parity',
    '',
    `Every test fixture's reference cases on the ${provider} provider (${computeType} graphs) and on the CPU ` +
      `(float32), unreduced and with FiCoCo-V at half the visual tokens, ${PARITY_TOKENS} greedy tokens each. A row ` +
      `passes when its logits are within ${TOLERANCE[computeType]} of the CPU's (and of PyTorch's, unreduced) and ` +
      'the greedy tokens are the same. Half-precision scores can order patches that tie in float32 the other way: a ' +
      'reduced run whose patch fates differ in at most a tenth of the patches is a near tie (its logits cannot be ' +
      "compared); more is a failure. Greedy tokens that part where the CPU's own logits for the two tokens are " +
      'within the tolerance are a near tie too (its margin is shown).',
    '',
    ...parityTable(rows),
    '',
  ];
  writeReport([...header, ...paritySection]);

  const layers = values.layers !== undefined ? Number(values.layers) : layersThatFit();
  const arch = llava7b(layers);
  const modelDir = values.model ?? writeRandomModel(arch, randomModelDir(arch, 'F16'), 'F16');
  const label = values.model ?? `${arch.label}, random F16 weights`;
  const benchName = `${values.name}-speed`;
  const sampler = sampleGpuMemory();
  const code = await benchCommand([
    '--model',
    modelDir,
    '--provider',
    provider,
    '--methods',
    'ficoco-v',
    '--budgets',
    values.budgets,
    '--runs',
    values.runs,
    '--decode',
    values.decode,
    ...(values.model ? [] : ['--llm-scale', String(32 / layers)]),
    '--label',
    label,
    '--out',
    values.out,
    '--name',
    benchName,
  ]);
  const peakGpuMiB = await sampler.stop();
  const benchReport = fs
    .readFileSync(path.join(values.out, `${benchName}.md`), 'utf8')
    .split('\n')
    .slice(1);
  writeReport([
    ...header,
    ...paritySection,
    '## Speed',
    ...benchReport,
    `Peak GPU memory of this process, both engines loaded (nvidia-smi every 200 ms): ` +
      `${peakGpuMiB !== undefined ? `${peakGpuMiB} MiB` : 'not measured (no nvidia-smi)'}.`,
    '',
  ]);
  process.stderr.write(`wrote ${reportFile}\n`);
  return code !== 0 ? code : failed === 0 ? 0 : 1;
}

main().then(
  (code) => (process.exitCode = code),
  (error) => {
    console.error(error);
    process.exitCode = 3;
  },
);
