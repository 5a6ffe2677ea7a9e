import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EngineClient } from '../client/engineClient';
import { coresPerWorker, thisMachineCores } from '../engine/runtime/threads';
import { FicocoError } from '../common/errors';
import { AUTO_METHOD } from '../common/reductionChoice';
import { MAX_IMAGE_BYTES } from '../common/imageFile';
import { base64Length, MAX_NEW_TOKENS_LIMIT } from '../protocol/engine';
import { findPreset } from '../hub/presets';
import { isLoopback } from '../common/loopback';
import { buildServer } from '../server/app';
import { WorkerPool } from '../server/workerPool';
import {
  CommandOptions,
  integer,
  parseCommandArgs,
  providerArg,
  quantizationArg,
  reductionArg,
  threadsArg,
} from './args';
import { modelDirArg } from './models';

export const SERVE_USAGE = `Usage:
  ficoco serve [--model DIR|PRESET] [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--workers 1] [--queue 16]
               [--method auto|none|NAME] [--budget N] [--param NAME=VALUE] [--max-tokens 256] [--max-body-mb N]
               [--provider NAME] [--threads N] [--quantize none|int8|int4]

Serves the model over OpenAI's Chat Completions API: POST /v1/chat/completions (images as data: URLs, stream: true
for server-sent events), GET /v1/models, /health, /ready and /metrics (Prometheus). A request picks its reduction
with "ficoco": {"method": "ficoco-v", "budget": "11%"}; otherwise --method (default auto: the model's
recommendation). Binding to anything but this machine needs --api-key (or $FICOCO_API_KEY); clients then send
Authorization: Bearer KEY. --workers N starts up to N engine processes, one request each at a time, as many as memory
allows, sharing the cores among those that start unless --threads says otherwise; --queue requests wait beyond them,
and more get 429 with Retry-After. --max-body-mb bounds a request's body (default: the largest image the engine
takes, as base64, and 1 MiB of text).
`;

export const SERVE_OPTIONS = {
  model: { type: 'string' },
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8080' },
  'api-key': { type: 'string' },
  workers: { type: 'string', default: '1' },
  queue: { type: 'string', default: '16' },
  method: { type: 'string', default: AUTO_METHOD },
  budget: { type: 'string' },
  param: { type: 'string', multiple: true },
  'max-tokens': { type: 'string', default: '256' },
  'max-body-mb': { type: 'string' },
  provider: { type: 'string', default: 'cpu' },
  threads: { type: 'string' },
  quantize: { type: 'string' },
  help: { type: 'boolean' },
} satisfies CommandOptions;

/** `ficoco serve`: runs until SIGINT or SIGTERM. */
export async function serveCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs('serve', { args, options: SERVE_OPTIONS });
  if (values.help) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  const apiKey = values['api-key'] ?? process.env.FICOCO_API_KEY;
  if (!apiKey && !isLoopback(values.host))
    throw new FicocoError(
      `--host ${values.host} opens the engine to the network; give --api-key KEY (or $FICOCO_API_KEY) so that only ` +
        `clients with the key are answered, or serve on 127.0.0.1 behind a proxy that authenticates.`,
      'input',
    );
  const modelDir = modelDirArg(values.model);
  const maxTokens = integer('--max-tokens', values['max-tokens'], 1, MAX_NEW_TOKENS_LIMIT);
  const port = integer('--port', values.port, 0, 65535);
  // One image of the largest size the engine takes, as base64, and room for the conversation's text.
  const bodyLimit =
    values['max-body-mb'] !== undefined
      ? integer('--max-body-mb', values['max-body-mb'], 1) * 2 ** 20
      : base64Length(MAX_IMAGE_BYTES) + 2 ** 20;
  const reduction = reductionArg(values.method, values.budget, values.param);
  const threads = threadsArg(values.threads);
  const workers = integer('--workers', values.workers, 1);
  const machineCores = thisMachineCores() ?? os.availableParallelism();
  const model = {
    modelDir: path.resolve(modelDir),
    provider: providerArg(values.provider),
    ...(threads !== undefined ? { threads } : {}),
    quantization: quantizationArg(values.quantize),
    ...(reduction ? { warmUp: reduction } : {}),
  };
  // Workers busy at once share the cores, unless --threads says how many each takes.
  const shareOf = (running: number) =>
    threads === undefined && running > 1 ? { ...model, cores: coresPerWorker(machineCores, running) } : model;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const host = hostEntry();
  const pool = new WorkerPool({
    workers,
    queueLimit: integer('--queue', values.queue, 0),
    model: shareOf,
    // The client logs a first quantized load's progress at each quarter.
    newClient: () => new EngineClient({ ...host, log: (line) => log(`[engine] ${line}`) }),
    log,
  });
  const modelId = values.model !== undefined && findPreset(values.model) ? values.model : path.basename(model.modelDir);
  const app = buildServer({ pool, modelId, apiKey, bodyLimit, defaults: { reduction, maxTokens } });
  // Listening first: /health answers and /ready says "loading" while the workers load the model.
  const address = await app.listen({ host: values.host, port }).catch((error: unknown) => {
    throw listenError(error, values.host, port);
  });
  try {
    await pool.start();
  } catch (error) {
    await app.close();
    throw error;
  }
  // The key keeps strangers out, not eavesdroppers: plain http carries it, and every screenshot, as they are.
  if (!isLoopback(values.host))
    log(
      'ficoco serve: plain http: the API key, questions, screenshots and answers cross the network unencrypted; ' +
        'on a network you do not trust, serve on 127.0.0.1 behind a proxy that terminates TLS (docs/serving.md).',
    );
  const { cores } = pool.model;
  const sharing = cores !== undefined ? `, ${cores} of ${machineCores} cores each` : '';
  log(`ficoco serve: ${modelId} at ${address}/v1 (${pool.workers} worker(s)${sharing}, queue ${values.queue})`);
  await new Promise<void>((resolve) => {
    const stop = () => void app.close().then(() => resolve());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

/** Why the server cannot listen, as one line where the user can act: the port is taken, or the host is not ours. */
function listenError(error: unknown, host: string, port: number): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE')
    return new FicocoError(`--port ${port} on ${host} is in use; pick another port, or 0 for any free one.`, 'input');
  if (code === 'EACCES')
    return new FicocoError(
      `--port ${port} on ${host} needs privileges this process lacks; pick a port above 1023.`,
      'input',
    );
  if (code === 'EADDRNOTAVAIL') return new FicocoError(`--host ${host} is not an address of this machine.`, 'input');
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return new FicocoError(`--host ${host} is not a name this machine can resolve (${code}).`, 'input');
  return error;
}

/** The engine process's entry: host.js beside this bundle, or the source under tsx. */
function hostEntry(): { hostModule: string; execArgv?: string[] } {
  const bundled = path.join(__dirname, 'host.js');
  if (fs.existsSync(bundled)) return { hostModule: bundled };
  return { hostModule: path.join(__dirname, '..', 'host', 'main.ts'), execArgv: ['--import', 'tsx'] };
}
