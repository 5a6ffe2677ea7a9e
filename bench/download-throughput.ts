/**
 * Download throughput of `downloadModel` (streaming, SHA-256 of every byte, atomic rename) from a Hub API
 * server on 127.0.0.1 serving the TinyLLaVA-shaped random model: what the client side costs, the network
 * taken out. Also the same with one dropped connection mid-file, resumed.
 *
 *   node --import tsx bench/download-throughput.ts [--dir $TMPDIR/ficoco-bench/tinyllava-clip-tinyllama-f32] >
 * bench/results/download-throughput.md
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { machineLine } from '../src/cli/benchTiming';
import { downloadModel } from '../src/hub/download';
import { planDownload } from '../src/hub/downloadPlan';
import { startFakeHub } from '../tools/fakeHub';
import { TINYLLAVA, randomModelDir, writeRandomModel } from './randomModel';

const { values } = parseArgs({ options: { dir: { type: 'string', default: randomModelDir(TINYLLAVA) } } });

async function main(): Promise<void> {
  const source = writeRandomModel(TINYLLAVA, values.dir!, 'F32');
  const hub = await startFakeHub({ 'bench/tinyllava': { folder: source, commit: 'd'.repeat(40) } });
  const rows: string[] = [];
  try {
    // The first download only warms the page cache with the source (server and client share this disk and its two
    // cores).
    for (const [run, dropped] of [
      ['warm-up', false],
      ['measured', false],
      ['measured', true],
    ] as const) {
      const root = fs.mkdtempSync(path.join(source, '..', 'download-'));
      const plan = await planDownload({ repo: 'bench/tinyllava', revision: 'main', endpoint: hub.url, root });
      if (dropped) hub.dropAfter.set('model.safetensors', Math.floor(plan.totalBytes / 2));
      const started = performance.now();
      await downloadModel(plan, { retryDelayMs: 100 });
      const seconds = (performance.now() - started) / 1000;
      if (run === 'measured')
        rows.push(
          `| ${dropped ? 'one connection dropped at 50 %, resumed' : 'uninterrupted'} | ` +
            `${(plan.totalBytes / 2 ** 30).toFixed(2)} GiB | ${seconds.toFixed(1)} s | ` +
            `${(plan.totalBytes / 2 ** 20 / seconds).toFixed(0)} MiB/s |`,
        );
      fs.rmSync(root, { recursive: true, force: true });
    }
  } finally {
    await hub.close();
  }
  process.stdout.write(
    [
      '# Download throughput against a local Hub',
      '',
      `${TINYLLAVA.label} random F32 weights in the Hub's API shape from tools/fakeHub.ts on 127.0.0.1, ` +
        `downloaded by src/hub/download.ts (@huggingface/hub, SHA-256 of every byte, resume by Range, atomic ` +
        `completion) onto the same disk, after one unreported download that warms the page cache. ` +
        `${machineLine()} \`node --import tsx bench/download-throughput.ts\`.`,
      '',
      '| run | size | time | throughput |',
      '|---|---:|---:|---:|',
      ...rows,
      '',
    ].join('\n'),
  );
}

void main();
