import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { AskOptions, EngineClient, EngineError } from '../../src/extension/engineClient';
import { Baselines, PrefillRun, measureSpeedup } from '../../src/extension/speedup';
import { LoadParams } from '../../src/protocol/engine';

const ROOT = path.join(__dirname, '..', '..');
const HOST = path.join(ROOT, 'src', 'host', 'main.ts');
const MODEL = path.join(ROOT, 'test', 'fixtures', 'tiny-llava-llama');
const LOAD: LoadParams = { modelDir: MODEL, provider: 'cpu', threads: 1 };
const IMAGE = {
  name: 'shapes.png',
  dataBase64: fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'images', 'shapes.png')).toString('base64'),
};
const PREFILL_ONLY: AskOptions = {
  question: 'what is in the picture ?',
  images: [IMAGE],
  maxNewTokens: 1,
  temperature: 0,
  topP: 1,
  seed: 0,
};
const REDUCTION = { method: 'ficoco-v', budget: { tokens: 12 }, params: {} };

/** A memento in memory, as VS Code's globalState behaves. */
function memoryStore(): Baselines & { values: Map<string, unknown> } {
  const values = new Map<string, unknown>();
  return Object.assign(
    new Baselines({
      get: <T>(key: string) => values.get(key) as T | undefined,
      update: async (key, value) => void values.set(key, value),
    }),
    { values },
  );
}

describe('the speedup measurement on a real engine process', () => {
  let client: EngineClient;
  before(() => {
    client = new EngineClient({ hostModule: HOST, execArgv: ['--import', 'tsx'] });
  });
  after(() => client.dispose());

  const runOn =
    (token?: CancellationTokenSource['token']): PrefillRun =>
    async (reduced) => {
      const result = await client.ask(
        LOAD,
        { ...PREFILL_ONLY, ...(reduced ? { reduction: REDUCTION } : {}) },
        () => undefined,
        token,
      );
      return result.stopReason === 'cancelled' ? undefined : result.stats;
    };

  test('measures the unreduced baseline once, keeps it, and divides it by the reduced prefill', async () => {
    const baselines = memoryStore();
    const speedup = await measureSpeedup(runOn(), baselines, 'key', 5);
    assert.ok(speedup !== undefined && speedup > 0);
    const baseline = baselines.get('key')!;
    assert.ok(baseline > 0, 'the baseline is stored');
    assert.equal(await measureSpeedup(runOn(), baselines, 'key', baseline / 2), 2, 'the stored baseline is reused');
  });

  test('a cancelled measurement stops, stores nothing and reports no speedup', async () => {
    const baselines = memoryStore();
    const source = new CancellationTokenSource();
    source.cancel();
    await assert.rejects(
      measureSpeedup(runOn(source.token), baselines, 'key', 5),
      (error: unknown) => error instanceof EngineError && error.kind === 'cancelled',
    );
    assert.equal(baselines.values.size, 0);
  });

  test('a run that fails rejects, for the caller to log, and stores nothing', async () => {
    const baselines = memoryStore();
    const failing: PrefillRun = async () =>
      (await client.ask({ ...LOAD, modelDir: path.join(ROOT, 'nowhere') }, PREFILL_ONLY, () => undefined)).stats;
    await assert.rejects(
      measureSpeedup(failing, baselines, 'key', 5),
      (error: unknown) => error instanceof EngineError && error.kind === 'model-folder',
    );
    assert.equal(baselines.values.size, 0);
  });
});
