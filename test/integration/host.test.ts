import assert from 'node:assert/strict';
import { ChildProcess, execFile, fork } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import {
  CancellationTokenSource,
  ErrorCodes,
  IPCMessageReader,
  IPCMessageWriter,
  MessageConnection,
  ResponseError,
  createMessageConnection,
} from 'vscode-jsonrpc/node';
import { EngineClient, EngineError, HOST_V8_FLAGS } from '../../src/client/engineClient';
import { screenshotPng } from '../../tools/screenshotPng';
import {
  AskRequest,
  ENGINE_FAILURE,
  LoadParams,
  LoadProgressParams,
  LoadRequest,
  TextNotification,
  errorKindOf,
} from '../../src/protocol/engine';

// The build is not part of `npm test`: the host runs from source through tsx.
const ROOT = path.join(__dirname, '..', '..');
const HOST = path.join(ROOT, 'src', 'host', 'main.ts');
const TSX = ['--import', 'tsx'];
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const MODEL = path.join(FIXTURES, 'tiny-llava-llama');
const SHAPES = {
  name: 'shapes.png',
  dataBase64: fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')).toString('base64'),
};
const LOAD: LoadParams = { modelDir: MODEL, provider: 'cpu', threads: 1 };
const QUESTION = {
  question: 'what is in the picture ?',
  images: [SHAPES],
  maxNewTokens: 200,
  temperature: 0,
  topP: 1,
  seed: 0,
};
/** A sampled ask that runs to its 200-token limit on the fixture model, so a cancel has room to land. */
const LONG = { ...QUESTION, question: 'is there text in the image ?', temperature: 0.7, seed: 4 };

interface TestHost {
  child: ChildProcess;
  connection: MessageConnection;
  /** engine/text pieces by requestId, in arrival order */
  pieces: Map<string, string[]>;
  /** everything the host wrote to stdout (it should write nothing) */
  stdout: string[];
  /** notes of what arrived when, for ordering checks */
  events: string[];
  /** called after each piece is recorded (vscode-jsonrpc keeps one handler per method) */
  onPiece?: (requestId: string) => void;
}

function startHost(): TestHost {
  const child = fork(HOST, [], { cwd: ROOT, execArgv: TSX, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const host: TestHost = {
    child,
    connection: createMessageConnection(new IPCMessageReader(child), new IPCMessageWriter(child)),
    pieces: new Map(),
    stdout: [],
    events: [],
  };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => host.stdout.push(chunk));
  child.stderr!.resume();
  host.connection.onNotification(TextNotification, ({ requestId, text }) => {
    if (!host.pieces.has(requestId)) host.pieces.set(requestId, []);
    host.pieces.get(requestId)!.push(text);
    host.events.push(`text ${requestId}`);
    host.onPiece?.(requestId);
  });
  host.connection.listen();
  return host;
}

async function stopHost(host: TestHost): Promise<void> {
  host.connection.dispose();
  if (host.child.exitCode === null && host.child.signalCode === null) {
    host.child.kill();
    await once(host.child, 'exit');
  }
}

/** The ResponseError a request fails with. */
async function failure(request: Promise<unknown>): Promise<ResponseError<unknown>> {
  try {
    await request;
  } catch (error) {
    assert.ok(error instanceof ResponseError, `expected a ResponseError, got ${String(error)}`);
    return error;
  }
  assert.fail('the request succeeded');
}

describe('engine host over JSON-RPC', () => {
  let host: TestHost;
  before(() => {
    host = startHost();
  });
  after(() => stopHost(host));

  test('asking before any model is loaded says so', async () => {
    const error = await failure(host.connection.sendRequest(AskRequest, { ...QUESTION, requestId: 'early' }));
    assert.equal(errorKindOf(error), 'not-loaded');
  });

  test('a folder that is not a model is a model-folder error', async () => {
    const error = await failure(
      host.connection.sendRequest(LoadRequest, { ...LOAD, modelDir: path.join(FIXTURES, 'images') }),
    );
    assert.equal(error.code, ENGINE_FAILURE);
    assert.equal(errorKindOf(error), 'model-folder');
    assert.match(error.message, /config\.json is missing/);
  });

  test('parameters that break the contract are refused with the field named', async () => {
    const error = await failure(
      host.connection.sendRequest(LoadRequest, { ...LOAD, provider: 'tpu' } as unknown as LoadParams),
    );
    assert.equal(error.code, ErrorCodes.InvalidParams);
    assert.equal(errorKindOf(error), 'input');
    assert.match(error.message, /provider is "tpu"/);
    const ask = await failure(
      host.connection.sendRequest(AskRequest, { ...QUESTION, requestId: 'bad', maxNewTokens: 0 }),
    );
    assert.match(ask.message, /maxNewTokens is 0/);
  });

  const loadedFixture = () => ({ provider: 'cpu', modelDir: MODEL });

  test('loads the fixture model and reports the provider it runs on', async () => {
    const loaded = await host.connection.sendRequest(LoadRequest, LOAD);
    assert.deepEqual(loaded, loadedFixture());
  });

  test('a reduction the registry refuses comes back with kind reduction, for the extension to offer its settings', async () => {
    const unknown = await failure(
      host.connection.sendRequest(AskRequest, {
        ...QUESTION,
        requestId: 'unknown-method',
        reduction: { method: 'magic', budget: { tokens: 4 }, params: {} },
      }),
    );
    assert.equal(errorKindOf(unknown), 'reduction');
    assert.match(unknown.message, /Unknown reduction method "magic"/);
    const tooMany = await failure(
      host.connection.sendRequest(AskRequest, {
        ...QUESTION,
        requestId: 'too-many',
        reduction: { method: 'random', budget: { tokens: 5000 }, params: {} },
      }),
    );
    assert.equal(errorKindOf(tooMany), 'reduction');
  });

  test('a load warms up the reduction it is given; one that cannot run leaves the load and the answers alone', async () => {
    const before = await host.connection.sendRequest(AskRequest, { ...QUESTION, requestId: 'before-warm-up' });
    const warmUp = { method: 'ficoco-v', budget: { tokens: 4 }, params: {} };
    assert.deepEqual(await host.connection.sendRequest(LoadRequest, { ...LOAD, warmUp }), loadedFixture());
    const broken = { method: 'magic', budget: { tokens: 4 }, params: {} };
    assert.deepEqual(await host.connection.sendRequest(LoadRequest, { ...LOAD, warmUp: broken }), loadedFixture());
    const after = await host.connection.sendRequest(AskRequest, { ...QUESTION, requestId: 'after-warm-up' });
    assert.equal(after.text, before.text, 'warming up leaves no state behind');
    const reduced = await host.connection.sendRequest(AskRequest, {
      ...QUESTION,
      requestId: 'warmed',
      reduction: warmUp,
    });
    assert.equal(reduced.stats.visualTokens[0].atDecoder, 4);
    assert.deepEqual(reduced.stats.reduction?.rule, 'setting');
    const noBudget = await failure(
      host.connection.sendRequest(LoadRequest, { ...LOAD, warmUp: { method: 'tome', params: {} } }),
    );
    assert.match(noBudget.message, /warmUp\.budget is missing; expected an object/);
  });

  test('streams the answer as engine/text pieces that add up to the final text', async () => {
    const full = await host.connection.sendRequest(AskRequest, { ...QUESTION, requestId: 'shapes' });
    const pieces = host.pieces.get('shapes') ?? [];
    assert.ok(pieces.length > 1, `expected several pieces, got ${pieces.length}`);
    assert.equal(pieces.join(''), full.text);
    assert.notEqual(full.text.trim(), '');
    assert.notEqual(full.stopReason, 'cancelled');
    assert.ok(full.stats.generatedTokens > 0);
    assert.equal(full.stats.provider, 'cpu');
    assert.equal(full.stats.visualTokens.length, 1);
    assert.ok(full.stats.prefillMs > 0 && full.stats.ttftMs > 0);
  });

  test('cancelling stops generation between tokens and returns the partial answer', async () => {
    const uncancelled = await host.connection.sendRequest(AskRequest, { ...LONG, requestId: 'long' });
    const source = new CancellationTokenSource();
    host.onPiece = (requestId) => {
      if (requestId === 'cancel') source.cancel();
    };
    try {
      const answer = await host.connection.sendRequest(AskRequest, { ...LONG, requestId: 'cancel' }, source.token);
      assert.equal(answer.stopReason, 'cancelled');
      const full = uncancelled.stats.generatedTokens;
      assert.ok(
        answer.stats.generatedTokens < full / 2,
        `${answer.stats.generatedTokens} tokens after cancelling; the whole answer has ${full}`,
      );
      assert.equal((host.pieces.get('cancel') ?? []).join(''), answer.text);
      assert.ok(uncancelled.text.startsWith(answer.text));
    } finally {
      host.onPiece = undefined;
    }
  });

  test('a corrupt image is an image error, and the host answers the next question', async () => {
    const corrupt = { name: 'broken.png', dataBase64: Buffer.from('this is not a png at all').toString('base64') };
    const error = await failure(
      host.connection.sendRequest(AskRequest, { ...QUESTION, images: [corrupt], requestId: 'corrupt' }),
    );
    assert.equal(errorKindOf(error), 'image');
    assert.match(error.message, /broken\.png/);
    const next = await host.connection.sendRequest(AskRequest, {
      ...QUESTION,
      maxNewTokens: 3,
      requestId: 'after-corrupt',
    });
    assert.equal(next.stats.generatedTokens, 3);
  });

  test('asks run one at a time: the second streams only after the first has answered', async () => {
    host.events.length = 0;
    const first = host.connection
      .sendRequest(AskRequest, { ...QUESTION, maxNewTokens: 20, requestId: 'first' })
      .then((answer) => {
        host.events.push('answer first');
        return answer;
      });
    const second = host.connection.sendRequest(AskRequest, { ...QUESTION, maxNewTokens: 20, requestId: 'second' });
    await Promise.all([first, second]);
    const answered = host.events.indexOf('answer first');
    assert.ok(answered >= 0);
    assert.ok(!host.events.slice(0, answered).includes('text second'), host.events.join(', '));
    assert.ok(host.events.slice(answered).includes('text second'));
  });

  test('loading another model replaces the loaded one', async () => {
    const qwen = path.join(FIXTURES, 'tiny-llava-qwen2');
    assert.equal((await host.connection.sendRequest(LoadRequest, { ...LOAD, modelDir: qwen })).modelDir, qwen);
    const answer = await host.connection.sendRequest(AskRequest, { ...QUESTION, maxNewTokens: 4, requestId: 'qwen' });
    assert.ok(answer.stats.generatedTokens > 0);
    assert.equal((await host.connection.sendRequest(LoadRequest, LOAD)).modelDir, MODEL);
  });

  test('writes nothing to stdout', () => {
    assert.deepEqual(host.stdout, []);
  });
});

describe('engine host process lifetime', () => {
  test('exits with code 0 when the parent closes the channel', async () => {
    const host = startHost();
    await host.connection
      .sendRequest(LoadRequest, { ...LOAD, modelDir: path.join(FIXTURES, 'images') })
      .catch(() => undefined);
    const exit = once(host.child, 'exit');
    host.child.disconnect();
    assert.deepEqual(await exit, [0, null]);
    host.connection.dispose();
  });

  test('killing it ends it cleanly, and the connection closes', async () => {
    const host = startHost();
    await host.connection.sendRequest(LoadRequest, LOAD);
    const closed = new Promise<void>((resolve) => host.connection.onClose(() => resolve()));
    const exit = once(host.child, 'exit');
    host.child.kill();
    assert.deepEqual(await exit, [null, 'SIGTERM']);
    await closed;
    host.connection.dispose();
  });
});

describe('EngineClient', () => {
  const lines: string[] = [];
  let client: EngineClient;
  before(() => {
    client = new EngineClient({ hostModule: HOST, execArgv: TSX, log: (line) => lines.push(line) });
  });
  after(() => client.dispose());

  test("the engine process's V8 flags let its small heap grow by 24 MB without a mark-compact", async () => {
    // The first collection sizes the old generation from a heap of a few MB, as the engine's first answers do.
    const grow = 'gc(); const kept = []; for (let i = 0; i < 24 * 1024; i++) kept.push(new Array(120).fill(i));';
    const { stdout } = await promisify(execFile)(process.execPath, [
      ...HOST_V8_FLAGS,
      '--expose-gc',
      '--trace-gc',
      '--eval',
      grow,
    ]);
    const markCompacts = stdout.split('\n').filter((line) => line.includes('Mark-Compact'));
    assert.equal(markCompacts.length, 1, `only the one gc() asks for:\n${markCompacts.join('\n')}`);
  });

  test('forks the host on first use only', () => {
    assert.equal(client.processId, undefined);
  });

  test('loads, streams and answers; later questions reuse the same process', async () => {
    const pieces: string[] = [];
    const answer = await client.ask(LOAD, { ...QUESTION, maxNewTokens: 12 }, { text: (text) => pieces.push(text) });
    assert.equal(pieces.join(''), answer.text);
    const pid = client.processId;
    assert.ok(pid);
    await client.ask(LOAD, { ...QUESTION, maxNewTokens: 2 }, { text: () => undefined });
    assert.equal(client.processId, pid);
    assert.ok(
      lines.some((line) => line.includes('[ficoco-host] loaded on cpu')),
      lines.join('\n'),
    );
  });

  test('a load without a reduction warms up too: its first question foretells its first image pass', async () => {
    const foretold: (number | undefined)[] = [];
    await client.ask(
      { ...LOAD, modelDir: path.join(FIXTURES, 'tiny-llava-qwen2') },
      { ...QUESTION, maxNewTokens: 2 },
      { text: () => undefined, progress: ({ nextRunMs }) => foretold.push(nextRunMs) },
    );
    assert.equal(typeof foretold[0], 'number', 'the warm-up set the pace');
  });

  test("a tiled screenshot's progress reaches the client before its text: every part of the image, then the prompt", async () => {
    const heard: string[] = [];
    const foretold: (number | undefined)[] = [];
    const screenshot = { name: 'screenshot.png', dataBase64: screenshotPng().toString('base64') };
    await client.ask(
      { ...LOAD, modelDir: path.join(FIXTURES, 'tiny-llava-onevision-qwen2') },
      { ...QUESTION, images: [screenshot], maxNewTokens: 2 },
      {
        text: () => heard.push('text'),
        progress: ({ stage, done, total, nextRunMs }) => {
          heard.push(`${stage} ${stage === 'image' ? `${done}/${total}` : ''}`);
          foretold.push(nextRunMs);
        },
      },
    );
    const parts = heard.filter((event) => event.startsWith('image')).length - 1;
    assert.ok(parts > 1);
    assert.deepEqual(
      heard.slice(0, parts + 1),
      Array.from({ length: parts + 1 }, (_, i) => `image ${i}/${parts}`),
    );
    assert.deepEqual([...new Set(heard.slice(parts + 1))], ['prompt ', 'text']);
    assert.ok(heard.lastIndexOf('prompt ') < heard.indexOf('text'));
    // After the first tower pass the engine foretells the next: the estimate crosses the process boundary.
    assert.equal(typeof foretold[1], 'number');
  });

  test('two questions for two models at once: each is answered by its own model', async () => {
    const other = { ...LOAD, modelDir: path.join(FIXTURES, 'tiny-llava-qwen2') };
    const ask = (model: LoadParams) => client.ask(model, { ...QUESTION, maxNewTokens: 6 }, { text: () => undefined });
    const [here, there] = [(await ask(LOAD)).text, (await ask(other)).text];
    assert.notEqual(here, there, 'the two models answer differently');
    // The second question's load must not come between the first's load and its question.
    const [first, second] = await Promise.all([ask(LOAD), ask(other)]);
    assert.deepEqual([first.text, second.text], [here, there]);
  });

  test('cancelling the token returns the partial answer', async () => {
    const source = new CancellationTokenSource();
    const answer = await client.ask(LOAD, LONG, { text: () => source.cancel() }, source.token);
    assert.equal(answer.stopReason, 'cancelled');
    assert.ok(answer.stats.generatedTokens < LONG.maxNewTokens / 2);
  });

  test('an engine process ended by stop() is logged as stopped, not as killed', async () => {
    const logged: string[] = [];
    const stopping = new EngineClient({ hostModule: HOST, execArgv: TSX, log: (line) => logged.push(line) });
    await stopping.load(LOAD);
    const pid = stopping.processId;
    stopping.dispose();
    const deadline = Date.now() + 10_000;
    while (!logged.some((line) => line.startsWith(`engine process ${pid} `) && !line.endsWith('started'))) {
      assert.ok(Date.now() < deadline, logged.join('\n'));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(logged.includes(`engine process ${pid} stopped`), logged.join('\n'));
    assert.ok(!logged.some((line) => line.includes('killed')), logged.join('\n'));
  });

  test('a first quantized load reports its layers as they are cached and logs each quarter; a cached load neither', async () => {
    const progress: LoadProgressParams[] = [];
    const logged: string[] = [];
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-host-int4-'));
    for (const file of fs.readdirSync(MODEL)) fs.copyFileSync(path.join(MODEL, file), path.join(copy, file));
    const reporting = new EngineClient({
      hostModule: HOST,
      execArgv: TSX,
      onLoadProgress: (p) => progress.push(p),
      log: (line) => logged.push(line),
    });
    const quarters = () => logged.filter((line) => line.startsWith('Quantizing'));
    try {
      await reporting.load({ ...LOAD, modelDir: copy, quantization: 'int4' });
      const { total } = progress[0];
      assert.ok(total > 10, `${total} layers`);
      assert.deepEqual(
        progress.map(({ quantization, done }) => `${quantization} ${done}`),
        Array.from({ length: total }, (_, i) => `int4 ${i + 1}`),
      );
      assert.deepEqual(
        quarters(),
        [1, 2, 3, 4].map(
          (quarter) => `Quantizing to int4 (first load only): ${Math.ceil((quarter * total) / 4)} / ${total} layers`,
        ),
      );
      reporting.stop();
      progress.length = 0;
      logged.length = 0;
      await reporting.load({ ...LOAD, modelDir: copy, quantization: 'int4' });
      assert.deepEqual(progress, []);
      assert.deepEqual(quarters(), []);
    } finally {
      reporting.dispose();
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });

  test('engine failures arrive as EngineErrors with their kind', async () => {
    await assert.rejects(
      client.load({ ...LOAD, modelDir: path.join(FIXTURES, 'images') }),
      (error) => error instanceof EngineError && error.kind === 'model-folder',
    );
  });

  test('a crash fails the question in flight, and the next question runs in a new process', async () => {
    const crashed = client.processId!;
    const asking = client.ask(LOAD, LONG, { text: () => process.kill(crashed, 'SIGKILL') });
    await assert.rejects(
      asking,
      (error) => error instanceof EngineError && error.kind === 'crashed' && /SIGKILL/.test(error.message),
    );
    const answer = await client.ask(LOAD, { ...QUESTION, maxNewTokens: 2 }, { text: () => undefined });
    assert.equal(answer.stats.generatedTokens, 2);
    assert.notEqual(client.processId, crashed);
  });

  test('restartWhenIdle() lets the questions in flight finish; the next one runs in a fresh process', async () => {
    await client.ask(LOAD, { ...QUESTION, maxNewTokens: 2 }, { text: () => undefined });
    const before = client.processId!;
    const answeredBy: (number | undefined)[] = [];
    let second: Promise<unknown> | undefined;
    const first = client.ask(
      LOAD,
      { ...LONG, maxNewTokens: 40 },
      {
        text: () => {
          if (second) return;
          // What installing the CUDA provider does: the process in flight loaded ONNX Runtime without it.
          client.restartWhenIdle();
          // A question asked after it goes to a fresh process, once the answer in flight is done.
          second = client.ask(
            LOAD,
            { ...QUESTION, maxNewTokens: 2 },
            { text: () => answeredBy.push(client.processId) },
          );
        },
      },
    );
    const answer = await first;
    assert.equal(answer.stopReason, 'max-tokens', 'the answer in flight is not cut off');
    assert.equal(answer.stats.generatedTokens, 40);
    assert.equal(((await second) as { stats: { generatedTokens: number } }).stats.generatedTokens, 2);
    assert.ok(answeredBy.length > 0 && answeredBy.every((pid) => pid !== undefined && pid !== before));
    // Nothing in flight: the process ends at once.
    client.restartWhenIdle();
    assert.equal(client.processId, undefined);
  });

  test('stop() ends the process; what was in flight fails as cancelled', async () => {
    const asking = client.ask(LOAD, LONG, { text: () => client.stop() });
    await assert.rejects(asking, (error) => error instanceof EngineError && error.kind === 'cancelled');
    assert.equal(client.processId, undefined);
  });
});
