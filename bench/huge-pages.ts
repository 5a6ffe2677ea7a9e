/**
 * What glibc's huge pages (ENGINE_HUGE_PAGES, which the engine's processes start with on Linux) change: processes
 * started in turn with 4 KiB pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=0, the user's way to turn them off) and with
 * the engine's setting, each loading LLaVA-OneVision-0.5B shapes (random F32 weights), asking about a 1920 × 1080
 * screenshot unreduced, then warming up FiCoCo-V at 11 % from the tower's first layer and asking with it.
 *
 *   node --import tsx bench/huge-pages.ts [--rounds 2] > bench/results/huge-pages.md
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { ENGINE_HUGE_PAGES, ENGINE_OLD_SPACE_FLOOR } from '../src/client/engineClient';
import { machineLine, median } from '../src/cli/benchTiming';
import { LlavaEngine } from '../src/engine/engine';
import type { ReductionRequest } from '../src/common/reductionChoice';
import { screenshotPng } from '../tools/screenshotPng';
import { ONEVISION_05B, randomModelDir, writeRandomModel } from './randomModel';

const QUESTION = 'What does the error dialog say?';
const REDUCTION: ReductionRequest = { method: 'ficoco-v', budget: { ratio: 0.11 }, params: { start: 0 } };
const SETTINGS = [
  { label: '4 KiB pages (glibc.malloc.hugetlb=0)', tunables: 'glibc.malloc.hugetlb=0' },
  { label: `huge pages (${ENGINE_HUGE_PAGES}, the engine's)`, tunables: ENGINE_HUGE_PAGES },
];
const COLUMNS = ['load', 'warm-up', 'unreduced question', 'FiCoCo-V warm-up', 'FiCoCo-V question'] as const;
type Timings = Record<(typeof COLUMNS)[number], number>;
type Run = Timings & { hugePagesKb: number; peakKb: number };

/** One process's run: the timings, in ms, the huge pages it held at the end and its peak resident memory. */
async function measureHere(modelDir: string): Promise<Run> {
  const image = { bytes: screenshotPng(1920, 1080), name: 'screenshot.png' };
  const timed = async (work: () => Promise<unknown>) => {
    const started = performance.now();
    await work();
    return performance.now() - started;
  };
  let engine: LlavaEngine | undefined;
  const load = await timed(async () => (engine = await LlavaEngine.load(modelDir)));
  try {
    const ask = (reduction?: ReductionRequest) =>
      timed(() => engine!.ask({ question: QUESTION, images: [image], reduction, maxNewTokens: 1 }));
    const timings: Timings = {
      load,
      'warm-up': await timed(() => engine!.warmUp()),
      'unreduced question': await ask(),
      'FiCoCo-V warm-up': await timed(() => engine!.warmUp(REDUCTION)),
      'FiCoCo-V question': await ask(REDUCTION),
    };
    const memory = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
    const hugePagesKb = Number(/^AnonHugePages:\s+(\d+) kB$/m.exec(memory)?.[1] ?? 0);
    return { ...timings, hugePagesKb, peakKb: process.resourceUsage().maxRSS };
  } finally {
    await engine?.dispose();
  }
}

async function main() {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '2' }, child: { type: 'string' } } });
  if (values.child) {
    process.stdout.write(JSON.stringify(await measureHere(values.child)));
    return;
  }
  const modelDir = writeRandomModel(ONEVISION_05B, randomModelDir(ONEVISION_05B), 'F32');
  const runs = SETTINGS.map(() => [] as Run[]);
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const [i, { tunables }] of SETTINGS.entries()) {
      const child = spawnSync(
        process.execPath,
        [...process.execArgv, ENGINE_OLD_SPACE_FLOOR, __filename, '--child', modelDir],
        {
          env: { ...process.env, GLIBC_TUNABLES: tunables },
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      if (child.status !== 0) throw new Error(`a measuring process ended with ${child.status ?? child.signal}`);
      runs[i].push(JSON.parse(child.stdout) as Run);
      process.stderr.write(`round ${round + 1}, ${SETTINGS[i].label}: ${child.stdout}\n`);
    }
  }
  const medians = runs.map((settingRuns) => COLUMNS.map((column) => median(settingRuns.map((run) => run[column]))));
  const rows = SETTINGS.map(({ label }, i) => {
    const gibibytes = (kb: number[]) => kb.map((value) => (value / 2 ** 20).toFixed(2)).join(', ');
    const memory = `${gibibytes(runs[i].map((run) => run.hugePagesKb))} | ${gibibytes(runs[i].map((run) => run.peakKb))}`;
    return `| ${label} | ${medians[i].map((ms) => ms.toFixed(0)).join(' | ')} | ${memory} |`;
  });
  const ratios = COLUMNS.map((_, c) => `${(medians[0][c] / medians[1][c]).toFixed(2)}×`);
  const report = [
    '# Huge pages for the engine',
    '',
    `\`node --import tsx bench/huge-pages.ts --rounds ${values.rounds}\``,
    '',
    'LLaVA-OneVision-0.5B shapes, random F32 weights, a 1920 × 1080 synthetic screenshot as a PNG and ' +
      `"${QUESTION}", one new token. Per run, a new process: load, warm up, ask unreduced, warm up FiCoCo-V at 11 % ` +
      "from the tower's first layer (its sessions built and a tower pass run), ask with it. The two settings take " +
      `turns, ${values.rounds} rounds; medians in ms; each run's huge pages at its end and its peak resident memory. ${machineLine()}`,
    '',
    `| pages | ${COLUMNS.join(' | ')} | huge pages held, GiB | peak resident, GiB |`,
    `|---|${COLUMNS.map(() => '---:|').join('')}---|---|`,
    ...rows,
    `| 4 KiB ÷ huge | ${ratios.join(' | ')} | | |`,
  ];
  process.stdout.write(`${report.join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
