/**
 * The engine process: forked by the extension with an IPC channel, it answers the JSON-RPC contract of
 * src/protocol/engine.ts around one LlavaEngine. Model loads and asks run one at a time, in arrival
 * order, because ONNX Runtime blocks this thread while it works. stdout stays silent; logs go to stderr.
 */
import * as path from 'node:path';
import {
  CancellationToken,
  ErrorCodes,
  IPCMessageReader,
  IPCMessageWriter,
  MessageConnection,
  ResponseError,
  createMessageConnection,
} from 'vscode-jsonrpc/node';
import { LlavaEngine } from '../engine/engine';
import { FicocoError } from '../common/errors';
import {
  AskParams,
  AskProgressNotification,
  AskRequest,
  AskResult,
  ENGINE_FAILURE,
  EngineErrorData,
  LoadParams,
  LoadProgressNotification,
  LoadRequest,
  LoadResult,
  TextNotification,
  loadKey,
  parseAskParams,
  parseLoadParams,
} from '../protocol/engine';

interface LoadedModel {
  /** what was asked for: a load with the same folder, provider and threads reuses the engine */
  key: string;
  engine: LlavaEngine;
  /** the reductions already warmed up on this engine */
  warmed: Set<string>;
}

/** Runs tasks one after another; a failed task does not stop the ones queued behind it. */
class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

class EngineHost {
  private readonly queue = new SerialQueue();
  private loaded: LoadedModel | undefined;

  constructor(private readonly connection: MessageConnection) {}

  load(params: LoadParams): Promise<LoadResult> {
    return this.queue.run(async () => {
      const modelDir = path.resolve(params.modelDir);
      const key = loadKey({ ...params, modelDir });
      if (this.loaded?.key !== key) {
        await this.unload();
        log(`loading ${modelDir} (provider ${params.provider}, weights ${params.quantization ?? 'none'})`);
        const { quantization } = params;
        const engine = await LlavaEngine.load(modelDir, {
          provider: params.provider,
          threads: params.threads,
          cores: params.cores,
          quantization,
          quantizedCacheDir: params.quantizedCacheDir,
          onQuantizing:
            quantization && quantization !== 'none'
              ? (done, total) =>
                  void this.connection.sendNotification(LoadProgressNotification, { quantization, done, total })
              : undefined,
        });
        this.loaded = { key, engine, warmed: new Set() };
        log(
          `loaded on ${engine.provider}${engine.providerFallback ? ` (${engine.providerFallback})` : ''}` +
            (engine.threads !== undefined ? `, ${engine.threads} thread(s)` : '') +
            (engine.quantizedWeights ? `, weights ${engine.quantizedWeights}` : ''),
        );
      }
      const { engine, warmed } = this.loaded;
      // Without a reduction too: a large model's warm-up gives the pace its first image pass is foretold by.
      const warmUpKey = JSON.stringify(params.warmUp ?? 'none');
      if (!warmed.has(warmUpKey)) {
        warmed.add(warmUpKey);
        // A reduction that cannot run here fails the question that asks for it, with its own error.
        await engine.warmUp(params.warmUp).catch((error: unknown) => log(`warm-up skipped: ${String(error)}`));
      }
      return {
        provider: engine.provider,
        modelDir: engine.modelDir,
        ...(engine.providerFallback ? { providerFallback: engine.providerFallback } : {}),
      };
    });
  }

  ask(params: AskParams, token: CancellationToken): Promise<AskResult> {
    return this.queue.run(async () => {
      if (token.isCancellationRequested) {
        throw new ResponseError<EngineErrorData>(ENGINE_FAILURE, 'The question was cancelled before it started.', {
          kind: 'cancelled',
        });
      }
      if (!this.loaded) {
        throw new ResponseError<EngineErrorData>(ENGINE_FAILURE, 'No model is loaded; send engine/load first.', {
          kind: 'not-loaded',
        });
      }
      // The engine checks the signal between tower passes, prompt chunks and decode steps (engine.ask says what then).
      const controller = new AbortController();
      const subscription = token.onCancellationRequested(() => controller.abort());
      try {
        const answer = await this.loaded.engine.ask({
          question: params.question,
          images: params.images.map((image) => ({ name: image.name, bytes: Buffer.from(image.dataBase64, 'base64') })),
          maxNewTokens: params.maxNewTokens,
          history: (params.history ?? []).map(({ role, text }) => ({
            role,
            content: [{ type: 'text' as const, text }],
          })),
          reduction: params.reduction,
          sampling: {
            temperature: params.temperature,
            topP: params.topP,
            seed: params.seed,
            topK: params.topK,
            minP: params.minP,
            repetitionPenalty: params.repetitionPenalty,
          },
          signal: controller.signal,
          onText: (text) =>
            void this.connection.sendNotification(TextNotification, { requestId: params.requestId, text }),
          onProgress: (progress) =>
            void this.connection.sendNotification(AskProgressNotification, {
              requestId: params.requestId,
              ...progress,
            }),
        });
        return { text: answer.text, stopReason: answer.stopReason, stats: answer.stats };
      } finally {
        subscription.dispose();
      }
    });
  }

  async unload(): Promise<void> {
    const previous = this.loaded;
    this.loaded = undefined;
    if (previous) await previous.engine.dispose();
  }
}

/** Every failure leaves as a ResponseError whose data names its kind. */
function toResponseError(error: unknown): ResponseError<EngineErrorData> {
  if (error instanceof ResponseError) return error as ResponseError<EngineErrorData>;
  if (error instanceof FicocoError)
    return new ResponseError<EngineErrorData>(ENGINE_FAILURE, error.message, { kind: error.kind });
  log(`unexpected error: ${error instanceof Error ? error.stack : String(error)}`);
  const message = error instanceof Error ? error.message : String(error);
  return new ResponseError<EngineErrorData>(ErrorCodes.InternalError, `The engine failed unexpectedly: ${message}`, {
    kind: 'internal',
  });
}

/** Runs a request's work (validation included) and turns whatever it throws into a ResponseError. */
function respond<T>(work: () => Promise<T>): Promise<T> {
  return Promise.resolve()
    .then(work)
    .catch((error: unknown) => Promise.reject(toResponseError(error)));
}

function log(message: string): void {
  process.stderr.write(`[ficoco-host] ${message}\n`);
}

function main(): void {
  if (!process.send) {
    log(
      'this is the FiCoCo engine process; start it with child_process.fork (it talks JSON-RPC over the IPC ' +
        'channel).',
    );
    process.exit(2);
  }
  const connection = createMessageConnection(new IPCMessageReader(process), new IPCMessageWriter(process));
  const host = new EngineHost(connection);
  connection.onRequest(LoadRequest, (params: unknown) => respond(() => host.load(parseLoadParams(params))));
  connection.onRequest(AskRequest, (params: unknown, token) => respond(() => host.ask(parseAskParams(params), token)));
  // The parent went away (closed the channel or died): nothing is left to answer.
  process.on('disconnect', () => process.exit(0));
  connection.onClose(() => process.exit(0));
  connection.listen();
}

main();
