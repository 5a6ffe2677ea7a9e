/**
 * A bounded load test of `ficoco serve` on 127.0.0.1 (the built-in model unless --model names a folder or preset, or
 * --arch a benchmark architecture with random weights, bench/randomModel.ts):
 * --requests chat completions with an image, --concurrency at a time, through the official `openai` client; stops by
 * itself. Checks that every request got exactly one answer (ids unique, none lost) and reports latency percentiles and
 * throughput per row of --workers: N workers, or N:T for N workers with --threads T each (else their share of the
 * cores).
 *
 *   node --import tsx bench/serve-load.ts [--model DIR|PRESET | --arch NAME] [--requests 200] [--concurrency 16] [--workers 1,2] >
 * bench/results/serve-load.md
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { machineLine } from '../src/cli/benchTiming';
import { startServe } from '../tools/serveProcess';
import { randomArchitecture, randomModelDir, writeRandomModel } from './randomModel';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '16' },
    workers: { type: 'string', default: '1,2' },
    model: { type: 'string' },
    arch: { type: 'string' },
  },
});
const ARCH = values.arch !== undefined ? randomArchitecture(values.arch, 4) : undefined;
const MODEL = ARCH ? writeRandomModel(ARCH, randomModelDir(ARCH), 'F32') : values.model;
const MODEL_LABEL = ARCH ? `${ARCH.label}, random F32 weights` : (values.model ?? 'the built-in model');
const REQUESTS = Number(values.requests);
const CONCURRENCY = Number(values.concurrency);
const IMAGES = path.join(__dirname, 'eval-set', 'images');

interface Outcome {
  ms: number;
  id?: string;
  status: number;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

/** One row of --workers: `N` workers, each with its share of the cores, or `N:T`, each with T threads. */
async function loadTest(row: string): Promise<string> {
  const [workers, threads] = row.split(':');
  const server = await startServe(
    '--workers',
    workers,
    '--queue',
    String(CONCURRENCY),
    '--method',
    'auto',
    ...(MODEL !== undefined ? ['--model', MODEL] : []),
    ...(threads !== undefined ? ['--threads', threads] : []),
  );
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const model = (await client.models.list()).data[0].id;
    const images = fs.readdirSync(IMAGES).slice(0, 20);
    const urls = images.map(
      (file) => `data:image/png;base64,${fs.readFileSync(path.join(IMAGES, file)).toString('base64')}`,
    );
    const outcomes: Outcome[] = new Array(REQUESTS);
    let next = 0;
    const started = performance.now();
    // CONCURRENCY clients, each sending its next request when the last one is answered.
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let i = next++; i < REQUESTS; i = next++) {
          const sent = performance.now();
          try {
            const completion = await client.chat.completions.create({
              model,
              max_tokens: 8,
              messages: [
                {
                  role: 'user',
                  content: [
                    { type: 'image_url', image_url: { url: urls[i % urls.length] } },
                    { type: 'text', text: 'what is the title ?' },
                  ],
                },
              ],
            });
            outcomes[i] = { ms: performance.now() - sent, id: completion.id, status: 200 };
          } catch (error) {
            outcomes[i] = { ms: performance.now() - sent, status: (error as { status?: number }).status ?? 0 };
          }
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const answered = outcomes.filter((o) => o.status === 200);
    const ids = new Set(answered.map((o) => o.id));
    if (outcomes.filter(Boolean).length !== REQUESTS || ids.size !== answered.length)
      throw new Error(`lost or doubled answers: ${outcomes.filter(Boolean).length} outcomes, ${ids.size} ids`);
    const latencies = answered.map((o) => o.ms).sort((a, b) => a - b);
    const refused = outcomes.filter((o) => o.status !== 200);
    return (
      `| ${workers} | ${threads ?? 'share'} | ${REQUESTS} | ${answered.length} | ${refused.length}${refused.length ? ` (${[...new Set(refused.map((o) => o.status))].join(', ')})` : ''} | ` +
      `${percentile(latencies, 0.5).toFixed(0)} | ${percentile(latencies, 0.95).toFixed(0)} | ` +
      `${latencies[latencies.length - 1].toFixed(0)} | ${(answered.length / seconds).toFixed(2)} |`
    );
  } finally {
    await server.close();
  }
}

async function main(): Promise<void> {
  const rows: string[] = [];
  for (const row of values.workers!.split(',')) rows.push(await loadTest(row));
  process.stdout.write(
    [
      '# ficoco serve under load',
      '',
      `\`ficoco serve\` with ${MODEL_LABEL} (reduction auto: its recommendation) on 127.0.0.1, ` +
        `queue ${CONCURRENCY}; threads per worker: --threads, or its share of the cores (ficoco serve's default); ` +
        `${CONCURRENCY} clients (the official \`openai\` package, in this process) each send their next request ` +
        `when the last is answered, ${REQUESTS} requests in all: a screenshot from bench/eval-set as a data: URL ` +
        `and a question, 8 answer tokens at most. Every request got exactly one answer (ids unique, none lost). ` +
        `Latencies are from sending to the whole answer, queueing included. Clients and server share the machine. ` +
        `${machineLine()} \`${['node --import tsx bench/serve-load.ts', ...process.argv.slice(2)].join(' ')}\`.`,
      '',
      '| workers | threads each | requests | answered | refused | p50 ms | p95 ms | max ms | answers/s |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
    ].join('\n'),
  );
}

void main();
