/**
 * Garbage collection and reduction step time over many prefills in one engine process, as the extension's speedup
 * measurement runs them: the real host (src/host/main.ts, forked by EngineClient with the extension's V8 flags, plus
 * --trace-gc), the built-in model, prefill-only questions alternately unreduced and reduced. Per 100 prefills: the
 * speedup the status bar would show from those pairs, the reduction steps' time, the host's scavenges and
 * mark-compacts with their pauses, and the heap allocated per prefill (from the GC trace).
 *
 *   node --import tsx bench/gc-drift.ts [--prefills 1000] [--method ficoco-v] [--tokens 16]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { median } from '../src/cli/benchTiming';
import { EngineClient } from '../src/client/engineClient';
import { prefillMs } from '../src/extension/speedup';
import { findBuiltinModel } from '../src/hub/presets';

const { values } = parseArgs({
  options: {
    prefills: { type: 'string', default: '1000' },
    method: { type: 'string', default: 'ficoco-v' },
    tokens: { type: 'string', default: '16' },
  },
});
const ROOT = path.resolve(__dirname, '..');
const WINDOW = 100;
const IMAGE = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000001.png');

/** One line of V8's --trace-gc: `Scavenge 22.7 (32.5) -> 15.0 (32.5) MB, 0.71 / 0.01 ms …`. */
const GC_LINE = /: (Scavenge|Mark-Compact)[^\d]* ([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB, ([\d.]+) \//;

interface GcWindow {
  scavenges: number;
  markCompacts: number;
  pauseMs: number;
  allocatedMb: number;
}

async function main(): Promise<void> {
  const modelDir = findBuiltinModel(__dirname);
  if (!modelDir) throw new Error('needs the built-in model at models/tiny-llava-screens');
  const emptyWindow = (): GcWindow => ({ scavenges: 0, markCompacts: 0, pauseMs: 0, allocatedMb: 0 });
  let gc = emptyWindow();
  let heapAfterLastGc: number | undefined;
  const client = new EngineClient({
    hostModule: path.join(ROOT, 'src', 'host', 'main.ts'),
    execArgv: ['--import', 'tsx', '--trace-gc'],
    log: (line) => {
      const match = GC_LINE.exec(line);
      if (!match) return;
      const [, kind, before, after, pause] = match;
      if (kind === 'Scavenge') gc.scavenges++;
      else gc.markCompacts++;
      gc.pauseMs += Number(pause);
      // What the program allocated since the collection before: the heap this one found, less what that one left.
      if (heapAfterLastGc !== undefined) gc.allocatedMb += Number(before) - heapAfterLastGc;
      heapAfterLastGc = Number(after);
    },
  });
  const reduction = { method: values.method!, budget: { tokens: Number(values.tokens) }, params: {} };
  // The warm-up the extension asks for at load.
  const model = { modelDir, provider: 'cpu' as const, warmUp: reduction };
  const question = {
    question: 'what is the title ?',
    images: [{ name: path.basename(IMAGE), dataBase64: fs.readFileSync(IMAGE).toString('base64') }],
    maxNewTokens: 1,
    temperature: 0,
    topP: 1,
    seed: 0,
  };
  const ask = (reduced: boolean) =>
    client.ask(model, { ...question, ...(reduced ? { reduction } : {}) }, { text: () => undefined });
  try {
    // One of each side first, as a speedup measurement begins.
    await ask(false);
    await ask(true);
    gc = emptyWindow();
    console.log(
      '| prefills | speedup (median of pairs) | steps ms (median) | scavenges | mark-compacts | GC pause ms | MiB allocated per prefill |',
    );
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    let ratios: number[] = [];
    let stepMs: number[] = [];
    const prefills = Number(values.prefills);
    for (let run = 2; run <= prefills; run += 2) {
      const unreduced = await ask(false);
      const reduced = await ask(true);
      ratios.push(prefillMs(unreduced.stats) / prefillMs(reduced.stats));
      stepMs.push(reduced.stats.steps.reduce((sum, step) => sum + step.ms, 0));
      if (run % WINDOW !== 0) continue;
      console.log(
        `| ${run - WINDOW + 1}–${run} | ${median(ratios).toFixed(2)}× | ${median(stepMs).toFixed(2)} | ${gc.scavenges} | ` +
          `${gc.markCompacts} | ${gc.pauseMs.toFixed(0)} | ${(gc.allocatedMb / WINDOW).toFixed(2)} |`,
      );
      [ratios, stepMs, gc] = [[], [], emptyWindow()];
    }
  } finally {
    client.dispose();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
