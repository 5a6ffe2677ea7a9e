/**
 * The extension's plain modules: the fix offered per failure, idle unloading, image files read for the chat, and the
 * engine load the settings ask for.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Mock, describe, mock, test } from 'node:test';
import type * as vscode from 'vscode';
import { EngineError } from '../../src/client/engineClient';
import { RemoteEngine, type RemoteEngineOptions } from '../../src/client/remoteEngine';
import { byteProgress } from '../../src/extension/byteProgress';
import { abortSignalOf } from '../../src/extension/cancellation';
import { fallbackFixes, fixFor } from '../../src/extension/errorFixes';
import { IdleUnloader } from '../../src/extension/idleUnload';
import { type ImageFileSystem, readImageFiles } from '../../src/extension/imageFiles';
import {
  FIGURES_DEPEND_ON,
  MAIN_SETTINGS,
  SettingsError,
  loadParamsOf,
  modelPathNames,
  readSettings,
} from '../../src/extension/settings';
import { RemoteClients } from '../../src/extension/remoteClients';
import { StatusFigures } from '../../src/extension/statusFigures';
import type { AnswerStatsView } from '../../src/protocol/webview';

/** The answer's text to a question through a RemoteEngine at `options`. */
async function remoteAnswer(options: RemoteEngineOptions): Promise<string> {
  const engine = new RemoteEngine(options);
  try {
    const answer = await engine.ask(
      { modelDir: '/models/any', provider: 'cpu' },
      { question: 'what does it say?', images: [], history: [], maxNewTokens: 4, temperature: 0, topP: 1, seed: 0 },
      { text: () => undefined },
    );
    return answer.text;
  } finally {
    engine.dispose();
  }
}

/** How a question through a RemoteEngine at `options` fails (one that is answered fails the test). */
async function remoteFailure(options: RemoteEngineOptions): Promise<unknown> {
  const text = await remoteAnswer(options).catch((error: unknown) => ({ error }));
  return typeof text === 'string' ? assert.fail(`${options.baseUrl} answered ${text}`) : text.error;
}

describe('the fix offered for a failure, by its kind', () => {
  test('model, provider, memory and reduction failures open their setting; crashes and bugs the log; the rest nothing', () => {
    const setting = (kind: EngineError['kind']) => fixFor(new EngineError('whatever the message says', kind));
    for (const kind of ['model-folder', 'config', 'weights'] as const)
      assert.deepEqual(setting(kind), { title: 'Open Settings', setting: 'ficoco.modelPath' });
    assert.deepEqual(setting('provider'), { title: 'Open Settings', setting: 'ficoco.provider' });
    assert.deepEqual(setting('memory'), { title: 'Open Settings', setting: 'ficoco.quantization' });
    // A model's own quantization entry overrides ficoco.quantization: the fix opens the setting that decides.
    assert.deepEqual(fixFor(new EngineError('out of memory', 'memory'), 'ficoco.quantizationByModel'), {
      title: 'Open Settings',
      setting: 'ficoco.quantizationByModel',
    });
    assert.deepEqual(setting('reduction'), { title: 'Open Settings', setting: 'ficoco.reduction' });
    assert.deepEqual(setting('crashed'), { title: 'Show Engine Log' });
    assert.deepEqual(setting('internal'), { title: 'Show Engine Log' });
    for (const kind of ['input', 'image', 'cancelled'] as const) assert.equal(setting(kind), undefined, kind);
    // The message never decides: an input error that talks about the budget opens nothing.
    assert.equal(fixFor(new EngineError('the reduction budget is odd', 'input')), undefined);
    assert.deepEqual(fixFor(new SettingsError('bad', 'ficoco.threads')), {
      title: 'Open Settings',
      setting: 'ficoco.threads',
    });
    assert.equal(fixFor(new Error('a bug')), undefined);
  });

  test('a provider fallback offers the CUDA provider where an NVIDIA driver runs without it, then the setting', () => {
    // The fallback's reason then says to run "FiCoCo: Install CUDA Provider": the first button does.
    assert.deepEqual(fallbackFixes({ cudaProviderMissing: true }), [
      { title: 'Install CUDA Provider…' },
      { title: 'Open Settings', setting: 'ficoco.provider' },
    ]);
    assert.deepEqual(fallbackFixes({ cudaProviderMissing: false }), [
      { title: 'Open Settings', setting: 'ficoco.provider' },
    ]);
  });

  test('an engine server that cannot be reached opens ficoco.engine: the engine log has nothing about it', async () => {
    const closed = net.createServer().listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const { port } = closed.address() as net.AddressInfo;
    closed.close();
    await once(closed, 'close');
    const failure = await remoteFailure({ baseUrl: `http://127.0.0.1:${port}/v1` });
    assert.ok(failure instanceof EngineError);
    assert.match(
      failure.message,
      /^Could not reach the engine server at http:\/\/127\.0\.0\.1:\d+\/v1: [^]*[^.]\. Is it/,
    );
    assert.deepEqual(fixFor(failure), { title: 'Open Settings', setting: 'ficoco.engine' });
  });
  test('a server that refuses the key offers Set Engine API Key; one that lists no models there opens its address', async () => {
    const server = http.createServer((request, response) => {
      const refused = request.headers.authorization !== 'Bearer right';
      response.writeHead(refused ? 401 : 404, { 'content-type': 'application/json' });
      const message = refused
        ? 'This server needs an API key.'
        : `${request.method} ${request.url} is not part of this API.`;
      response.end(JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code: null } }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const failureOf = (apiKey: string) => remoteFailure({ baseUrl: base, apiKey });
    try {
      assert.deepEqual(fixFor(await failureOf('wrong')), { title: 'Set Engine API Key' });
      const notThere = await failureOf('right');
      assert.match(
        (notThere as Error).message,
        /answered 404: GET \/models is not part of this API\. Is ficoco\.engine/,
      );
      assert.deepEqual(fixFor(notThere), { title: 'Open Settings', setting: 'ficoco.engine' });
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });

  test('a server that lists no models opens ficoco.engine, saying so: the local model path cannot fix it', async () => {
    // Ollama with no model pulled: GET /v1/models answers an empty list.
    const server = http.createServer((_request, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ object: 'list', data: [] }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const baseUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1`;
    try {
      const failure = await remoteFailure({ baseUrl });
      assert.equal(
        (failure as Error).message,
        `The engine server at ${baseUrl} lists no models: load or pull one on it, or set ficoco.engine to a ` +
          'server that serves one.',
      );
      assert.deepEqual(fixFor(failure), { title: 'Open Settings', setting: 'ficoco.engine' });
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });
});

describe('the model asked on a server that serves several (Ollama, vLLM with adapters)', () => {
  const served = ['llava:latest', 'llava:7b', 'qwen2.5vl:3b', 'gemma3:4b'];

  /** Runs `use` with the address of a server on 127.0.0.1 that lists `served`; it answers "asked MODEL". */
  async function withServer(use: (baseUrl: string, asked: string[]) => Promise<void>): Promise<void> {
    const asked: string[] = [];
    const server = http.createServer(async (request, response) => {
      if (request.url === '/v1/models') {
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ object: 'list', data: served.map((id) => ({ id, object: 'model' })) }));
        return;
      }
      let body = '';
      for await (const piece of request) body += piece;
      const { model } = JSON.parse(body) as { model: string };
      asked.push(model);
      const choices = [{ index: 0, delta: { content: `asked ${model}` }, finish_reason: 'stop' }];
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.end(
        `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', choices })}\n\ndata: [DONE]\n\n`,
      );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      await use(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1`, asked);
    } finally {
      server.close();
      server.closeAllConnections();
    }
  }

  test('the model set is the one asked', () =>
    withServer(async (baseUrl, asked) => {
      assert.equal(await remoteAnswer({ baseUrl, model: 'gemma3:4b' }), 'asked gemma3:4b');
      assert.deepEqual(asked, ['gemma3:4b']);
    }));

  test('none set: the question fails naming the models, and offers the setting that chooses', () =>
    withServer(async (baseUrl, asked) => {
      const failure = await remoteFailure({ baseUrl });
      assert.equal(
        (failure as Error).message,
        `The engine server at ${baseUrl} serves 4 models (llava:latest, llava:7b, qwen2.5vl:3b, gemma3:4b); set ` +
          'ficoco.engineModel to the one to ask.',
      );
      assert.deepEqual(fixFor(failure), { title: 'Open Settings', setting: 'ficoco.engineModel' });
      assert.deepEqual(asked, [], 'no model was asked in its place');
    }));

  test('one the server does not list: the question fails naming those it lists', () =>
    withServer(async (baseUrl, asked) => {
      const failure = await remoteFailure({ baseUrl, model: 'llava:13b' });
      assert.equal(
        (failure as Error).message,
        `The engine server at ${baseUrl} does not list llava:13b, the model in ficoco.engineModel; it lists ` +
          'llava:latest, llava:7b, qwen2.5vl:3b, gemma3:4b.',
      );
      assert.deepEqual(fixFor(failure), { title: 'Open Settings', setting: 'ficoco.engineModel' });
      assert.deepEqual(asked, []);
    }));

  test("a name without a tag is Ollama's :latest where the server lists that, and nothing fuzzier", () =>
    withServer(async (baseUrl, asked) => {
      // As `ollama run llava` runs llava:latest.
      assert.equal(await remoteAnswer({ baseUrl, model: 'llava' }), 'asked llava:latest');
      // Listed with another tag only: which one is the user's to choose.
      const failure = await remoteFailure({ baseUrl, model: 'qwen2.5vl' });
      assert.match((failure as Error).message, /does not list qwen2\.5vl, the model in ficoco\.engineModel;/);
      assert.deepEqual(asked, ['llava:latest']);
    }));
});

test('a changed engine address or key: a question running on the old client finishes there, then it is disposed', async () => {
  let answerStarted!: () => void;
  const started = new Promise<void>((resolve) => (answerStarted = resolve));
  let finishAnswer!: () => void;
  const finished = new Promise<void>((resolve) => (finishAnswer = resolve));
  const server = http.createServer(async (request, response) => {
    response.setHeader('content-type', request.url === '/v1/models' ? 'application/json' : 'text/event-stream');
    if (request.url === '/v1/models') {
      response.end(JSON.stringify({ object: 'list', data: [{ id: 'llava', object: 'model' }] }));
      return;
    }
    // The answer waits until the test has replaced the client it was asked through.
    answerStarted();
    await finished;
    const choices = [{ index: 0, delta: { content: 'finished' }, finish_reason: 'stop' }];
    response.end(`data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', choices })}\n\ndata: [DONE]\n\n`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const baseUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1`;
  const made: RemoteEngine[] = [];
  const create = () => {
    const engine = new RemoteEngine({ baseUrl });
    made.push(engine);
    // Watched, not replaced: a dispose still aborts what the client has in flight.
    mock.method(engine, 'dispose');
    return engine;
  };
  /** Which clients made so far have been disposed, by the order they were made. */
  const disposed = () =>
    made.flatMap((engine, index) => ((engine.dispose as Mock<() => void>).mock.callCount() > 0 ? [index] : []));
  const clients = new RemoteClients();
  try {
    const first = clients.client('key 1', create);
    assert.equal(first.created, true);
    assert.deepEqual(clients.client('key 1', create), { engine: first.engine, created: false });
    const answer = first.engine.ask(
      { modelDir: '/models/any', provider: 'cpu' },
      { question: 'compare?', images: [], history: [], maxNewTokens: 4, temperature: 0, topP: 1, seed: 0 },
      { text: () => undefined },
    );
    await started;
    const second = clients.client('key 2', create);
    assert.equal(second.created, true);
    assert.notEqual(second.engine, first.engine);
    assert.deepEqual(disposed(), [], 'the old client still answers');
    finishAnswer();
    assert.deepEqual(await answer, { text: 'finished', stopReason: 'stop-token' });
    assert.deepEqual(disposed(), [0], 'disposed once its last question ended');
    clients.client('key 3', create);
    assert.deepEqual(disposed(), [0, 1], 'one with nothing running is disposed at once');
    clients.dispose();
    assert.deepEqual(disposed(), [0, 1, 2]);
  } finally {
    finishAnswer();
    server.close();
    server.closeAllConnections();
  }
});

test(
  'a server that takes the question and never answers fails it at the bound, saying so',
  { timeout: 20_000 },
  async () => {
    const server = http.createServer((request, response) => {
      if (request.url !== '/v1/models') return;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ object: 'list', data: [{ id: 'stuck', object: 'model' }] }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const baseUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1`;
    try {
      const failure = await remoteFailure({ baseUrl, headersTimeoutMs: 500 });
      assert.equal(
        (failure as Error).message,
        `The engine server at ${baseUrl} took the request but sent nothing for 0.5 s: it is stuck, or a proxy on the ` +
          'way holds the request. Restart the server, or ask again.',
      );
    } finally {
      server.close();
      server.closeAllConnections();
    }
  },
);

describe('a cancellation token as an AbortSignal', () => {
  const tokenOf = (cancelled: boolean) => {
    const listeners: ((cancelled: unknown) => void)[] = [];
    const token: vscode.CancellationToken = {
      isCancellationRequested: cancelled,
      onCancellationRequested: (listener: (cancelled: unknown) => void) => {
        listeners.push(listener);
        return { dispose: () => undefined };
      },
    };
    return { token, cancel: () => listeners.forEach((listener) => listener(undefined)) };
  };

  test('aborts when the token is cancelled, and at once for a token cancelled already', () => {
    const { token, cancel } = tokenOf(false);
    const signal = abortSignalOf(token);
    assert.equal(signal.aborted, false);
    cancel();
    assert.equal(signal.aborted, true);
    assert.equal(abortSignalOf(tokenOf(true).token).aborted, true);
  });
});

describe("a download's progress notification", () => {
  test('the rate is of the bytes fetched in this run, not of those a resumed download had on disk', () => {
    let now = 0;
    const clock = mock.method(performance, 'now', () => now);
    try {
      const messages: string[] = [];
      const report = byteProgress({ report: ({ message }) => void messages.push(message!) }, { showRate: true });
      // 9 of 10 GB were on disk; the finished files are found at once, then 50 MB come in a second.
      report(4e9, 10e9, 0);
      report(9e9, 10e9, 0);
      now = 1000;
      report(9.05e9, 10e9, 50e6);
      assert.deepEqual(messages, ['4.0 GB of 10 GB · 0 B/s', '9.0 GB of 10 GB · 0 B/s', '9.1 GB of 10 GB · 50 MB/s']);
      // Without a count of fetched bytes (a download that never resumes), the rate is of all of them.
      const fresh: string[] = [];
      const plain = byteProgress({ report: ({ message }) => void fresh.push(message!) }, { showRate: true });
      now = 3000;
      plain(20e6, 100e6);
      assert.deepEqual(fresh, ['20 MB of 100 MB · 10 MB/s']);
    } finally {
      clock.mock.restore();
    }
  });
});

describe('idle unloading', () => {
  test('unloads after the idle minutes, counting only time with nothing in flight, and says how long', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    try {
      const unloaded: number[] = [];
      const unloader = new IdleUnloader({
        minutes: () => 2,
        loaded: () => true,
        unload: (idleMs) => unloaded.push(idleMs / 60_000),
      });
      unloader.busy();
      unloader.busy();
      unloader.idle();
      mock.timers.tick(3 * 60_000);
      assert.deepEqual(unloaded, [], 'one answer is still in flight');
      unloader.idle();
      mock.timers.tick(2 * 60_000 - 1);
      assert.deepEqual(unloaded, []);
      unloader.busy();
      unloader.idle();
      mock.timers.tick(2 * 60_000 - 1);
      assert.deepEqual(unloaded, [], 'new activity restarts the idle time');
      mock.timers.tick(1);
      assert.deepEqual(unloaded, [2]);
    } finally {
      mock.timers.reset();
    }
  });

  test('0 minutes keeps the engine; an engine that is not running is not unloaded', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    try {
      const unloaded: number[] = [];
      new IdleUnloader({
        minutes: () => 0,
        loaded: () => true,
        unload: (idleMs) => unloaded.push(idleMs / 60_000),
      }).idle();
      new IdleUnloader({
        minutes: () => 1,
        loaded: () => false,
        unload: (idleMs) => unloaded.push(idleMs / 60_000),
      }).idle();
      mock.timers.tick(24 * 60 * 60_000);
      assert.deepEqual(unloaded, []);
    } finally {
      mock.timers.reset();
    }
  });

  test('the setting changed while idle applies (0 keeps the engine, longer waits longer); none after dispose', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    try {
      const unloaded: number[] = [];
      let minutes = 1;
      const unloader = new IdleUnloader({
        minutes: () => minutes,
        loaded: () => true,
        unload: (idleMs) => unloaded.push(idleMs / 60_000),
      });
      unloader.idle();
      minutes = 0;
      mock.timers.tick(60_000);
      assert.deepEqual(unloaded, [], 'read again when the time is up');
      minutes = 1;
      unloader.busy();
      unloader.idle();
      minutes = 5;
      mock.timers.tick(60_000);
      mock.timers.tick(4 * 60_000 - 1);
      assert.deepEqual(unloaded, [], 'a longer setting is waited for in full');
      mock.timers.tick(1);
      assert.deepEqual(unloaded, [5]);
      unloaded.length = 0;
      minutes = 1;
      unloader.busy();
      unloader.dispose();
      unloader.idle();
      mock.timers.tick(60_000);
      assert.deepEqual(unloaded, [], 'a reply cancelled by the dispose goes idle after it');
    } finally {
      mock.timers.reset();
    }
  });

  test('a setting changed while idle is counted from when the engine went idle: enabled, or shortened', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    try {
      const unloaded: number[] = [];
      let minutes = 0;
      const unloader = new IdleUnloader({
        minutes: () => minutes,
        loaded: () => true,
        unload: (idleMs) => unloaded.push(idleMs / 60_000),
      });
      unloader.idle();
      mock.timers.tick(20 * 60_000);
      minutes = 15;
      unloader.minutesChanged();
      assert.deepEqual(unloaded, [20], 'idle for 20 minutes already: unloaded at once, saying 20');
      unloaded.length = 0;
      minutes = 60;
      unloader.busy();
      unloader.idle();
      mock.timers.tick(5 * 60_000);
      minutes = 10;
      unloader.minutesChanged();
      mock.timers.tick(5 * 60_000 - 1);
      assert.deepEqual(unloaded, []);
      mock.timers.tick(1);
      assert.deepEqual(unloaded, [10], 'unloaded 10 minutes after going idle, not 60');
      unloaded.length = 0;
      unloader.busy();
      unloader.minutesChanged();
      mock.timers.tick(24 * 60 * 60_000);
      assert.deepEqual(unloaded, [], 'a change while an answer runs starts no timer');
    } finally {
      mock.timers.reset();
    }
  });
});

describe("the status bar's figures", () => {
  const answer: AnswerStatsView = {
    visualTokens: [{ original: 144, atDecoder: 16 }],
    visionMs: 5,
    prefillMs: 10,
    ttftMs: 20,
    generatedTokens: 3,
    decodeTokensPerSecond: 50,
    provider: 'cpu',
    reduction: { method: 'ficoco-v', budget: '16', rule: 'setting', why: 'your setting' },
    speedup: { ratio: 3.1, low: 2.9, high: 3.3, pairs: 5, verdict: 'faster', label: '3.1× faster', timed: 'prefill' },
  };

  test('after the model or reduction changes, the last speedup is no longer shown as current', () => {
    const figures = new StatusFigures();
    figures.showAnswer(answer, figures.settingsGeneration);
    assert.equal(figures.view().text, '$(zap) 3.1×');
    assert.match(figures.view().tooltip, /^\*\*FiCoCo\*\* — last answer\n/);
    figures.settingsChanged();
    const changed = figures.view();
    assert.equal(changed.text, '$(zap) FiCoCo', 'no figure on the bar until the next answer');
    assert.equal(changed.label, 'FiCoCo');
    assert.match(changed.tooltip, /settings changed since the last answer/);
    assert.match(changed.tooltip, /with the previous settings:[^]*ficoco-v, budget 16[^]*3\.1× faster/);
    const next = { ...answer, speedup: { ...answer.speedup!, ratio: 1.8, label: '1.8× faster' } };
    figures.showAnswer(next, figures.settingsGeneration);
    assert.equal(figures.view().text, '$(zap) 1.8×', "the next answer's figure is current");
  });

  test('figures of an answer asked before the last settings change never show as current, nor replace newer ones', () => {
    const figures = new StatusFigures();
    const askedBefore = figures.settingsGeneration;
    figures.settingsChanged();
    figures.showAnswer(answer, askedBefore);
    assert.equal(figures.view().text, '$(zap) FiCoCo');
    assert.match(figures.view().tooltip, /with the previous settings:[^]*3\.1× faster/);
    const current = { ...answer, speedup: { ...answer.speedup!, ratio: 1.8, label: '1.8× faster' } };
    figures.showAnswer(current, figures.settingsGeneration);
    assert.equal(figures.view().text, '$(zap) 1.8×');
    figures.showWithoutStats('http://gpu-box:11434/v1', askedBefore);
    assert.equal(figures.view().text, '$(zap) 1.8×', 'an older answer ending late leaves the current figures');
  });

  test('before any answer, a settings change leaves the plain label; a server without stats is marked too', () => {
    const figures = new StatusFigures();
    figures.settingsChanged();
    assert.deepEqual(figures.view(), new StatusFigures().view());
    figures.showWithoutStats('http://gpu-box:11434/v1', figures.settingsGeneration);
    assert.equal(figures.view().text, '$(zap) reduction: not available on this server');
    figures.settingsChanged();
    assert.equal(figures.view().text, '$(zap) FiCoCo');
    assert.match(figures.view().tooltip, /last answer from `http:\/\/gpu-box:11434\/v1`, with the previous settings/);
  });

  test("a sampled answer's tooltip gives its seed after the decode, to get the answer again; a greedy one's none", () => {
    const figures = new StatusFigures();
    figures.showAnswer({ ...answer, seed: 4_294_967_295 }, figures.settingsGeneration);
    assert.match(
      figures.view().tooltip,
      /\| decode \| [^\n]*\|\n\| seed \| 4294967295 \(set ficoco\.seed to it to get this answer again\) \|\n/,
    );
    figures.showAnswer(answer, figures.settingsGeneration);
    assert.doesNotMatch(figures.view().tooltip, /seed/);
  });

  test('the settings the figures depend on are declared ones (ficoco.reduction: the method, budget and parameters)', () => {
    const declared = Object.keys(MAIN_SETTINGS);
    for (const setting of FIGURES_DEPEND_ON)
      assert.ok(
        declared.some((key) => key === setting || key.startsWith(`${setting}.`)),
        `${setting} is a setting or a section of settings`,
      );
  });
});

describe('the engine load the settings ask for', () => {
  const folders = { builtinModel: '/ext/models/tiny-llava-screens', quantizedCache: '/storage/quantized' };
  const settingsWith = (values: Record<string, unknown>) => readSettings((key) => values[key]).settings;

  test('empty: the built-in model, warmed up for auto; ~ is the home folder; threads and quantization when set', () => {
    assert.deepEqual(loadParamsOf(settingsWith({}), folders), {
      modelDir: folders.builtinModel,
      provider: 'auto',
      warmUp: { method: 'auto', params: {} },
    });
    assert.deepEqual(
      loadParamsOf(
        settingsWith({
          'ficoco.modelPath': '~/models/llava',
          'ficoco.threads': 2,
          'ficoco.quantization': 'int4',
          'ficoco.reduction.method': 'tome',
          'ficoco.reduction.budget': '64',
        }),
        folders,
      ),
      {
        modelDir: path.join(os.homedir(), 'models', 'llava'),
        provider: 'auto',
        threads: 2,
        quantization: 'int4',
        quantizedCacheDir: folders.quantizedCache,
        warmUp: { method: 'tome', budget: { tokens: 64 }, params: {} },
      },
    );
    const off = loadParamsOf(settingsWith({ 'ficoco.reduction.method': 'none' }), folders);
    assert.equal(off.warmUp, undefined, 'nothing to warm up without reduction');
  });

  test('a relative model path is a settings error naming the setting', () => {
    assert.throws(
      () => loadParamsOf(settingsWith({ 'ficoco.modelPath': 'models/llava' }), folders),
      (error: unknown) =>
        error instanceof SettingsError &&
        error.setting === 'ficoco.modelPath' &&
        /set it to the absolute path of a model folder/.test(error.message),
    );
  });
});

describe('Delete Model: whether ficoco.modelPath names the download it deletes', () => {
  test('however the setting spells the folder the engine loads, it is in use; another folder is not', () => {
    const folder = '/storage/models/llava-hf--llava-1.5-7b-hf/95f2cf316249a98c11183f471ab76065c3e5f494';
    for (const configured of [folder, `${folder}/`, ` ${folder} `, folder.replace('/models/', '//models/./')])
      assert.equal(modelPathNames(configured, folder, 'linux'), true, configured);
    const home = path.join(os.homedir(), 'models', 'llava');
    assert.equal(modelPathNames('~/models/llava/', home, 'linux'), true);
    assert.equal(modelPathNames(`${folder}-other`, folder, 'linux'), false);
    assert.equal(modelPathNames('', folder, 'linux'), false, 'the built-in model');
    assert.equal(modelPathNames('models/llava', folder, 'linux'), false, 'not absolute: no folder');
    // VS Code names the download c:\Users\…; a user writes C:/Users/… in settings.json.
    const windows =
      'c:\\Users\\me\\AppData\\Roaming\\Code\\User\\globalStorage\\ficoco.ficoco-vision\\models\\a--b\\' +
      'e'.repeat(40);
    const typed = windows.replace('c:', 'C:').replaceAll('\\', '/');
    assert.equal(modelPathNames(typed, windows, 'win32'), true);
    assert.equal(modelPathNames(`${typed}/`, windows, 'win32'), true);
  });
});

describe('image files read for the chat', () => {
  interface FakeFile {
    size: number;
    isFile?: boolean;
    /** bytes the read returns, when not `size` of them; 'never' for a read that does not end */
    read?: Uint8Array | 'never';
  }
  const fileSystemOf = (files: Record<string, FakeFile>) => {
    const reads: string[] = [];
    const fileSystem: ImageFileSystem<string> = {
      stat: async (uri) => {
        const file = files[uri];
        if (!file) throw new Error(`${uri} does not exist`);
        return { size: file.size, isFile: file.isFile ?? true };
      },
      readFile: (uri) => {
        reads.push(uri);
        const read = files[uri]?.read;
        if (read === 'never') return new Promise<Uint8Array>(() => undefined);
        return Promise.resolve(read ?? new Uint8Array(files[uri]?.size ?? 0).fill(7));
      },
    };
    return { fileSystem, reads };
  };
  const named = (...names: string[]) => names.map((name) => ({ uri: name, name }));

  test('refuses other files, non-files and oversized files by their stat, unread; reads the rest in order', async () => {
    const { fileSystem, reads } = fileSystemOf({
      'a.png': { size: 3 },
      'notes.txt': { size: 3 },
      'fifo.png': { size: 0, isFile: false },
      'huge.jpg': { size: 33 * 1024 * 1024 },
      'b.webp': { size: 2 },
    });
    const { images, refused } = await readImageFiles(
      named('a.png', 'notes.txt', 'fifo.png', 'huge.jpg', 'gone.gif', 'b.webp'),
      fileSystem,
      { room: 8 },
    );
    assert.deepEqual(images, [
      { name: 'a.png', dataBase64: Buffer.from([7, 7, 7]).toString('base64') },
      { name: 'b.webp', dataBase64: Buffer.from([7, 7]).toString('base64') },
    ]);
    assert.deepEqual(reads, ['a.png', 'b.webp']);
    assert.equal(refused.length, 4);
    assert.match(refused[0]!, /notes\.txt is not an image FiCoCo can read/);
    assert.match(refused[1]!, /fifo\.png is not a regular file/);
    assert.match(refused[2]!, /huge\.jpg is 33 MiB; FiCoCo takes image files up to 32 MiB/);
    assert.match(refused[3]!, /Could not read gone\.gif: gone\.gif does not exist/);
  });

  test('reads no more files than the question has room for', async () => {
    const names = Array.from({ length: 5 }, (_, index) => `shot-${index}.png`);
    const { fileSystem, reads } = fileSystemOf(Object.fromEntries(names.map((name) => [name, { size: 1 }])));
    const { images, refused } = await readImageFiles(named(...names), fileSystem, { room: 3 });
    assert.deepEqual(
      images.map((image) => image.name),
      names.slice(0, 3),
    );
    assert.deepEqual(reads, names.slice(0, 3), 'the files past the room are not read');
    assert.equal(refused.length, 2);
    assert.match(refused[0]!, /shot-3\.png was not added: a question can carry 8 images/);
  });

  test('a read that does not end is refused after the time allowed, and the files after it are read', async () => {
    const { fileSystem, reads } = fileSystemOf({ 'remote.png': { size: 4, read: 'never' }, 'local.png': { size: 1 } });
    const { images, refused } = await readImageFiles(named('remote.png', 'local.png'), fileSystem, {
      room: 8,
      timeoutMs: 50,
    });
    assert.deepEqual(reads, ['remote.png', 'local.png']);
    assert.deepEqual(
      images.map((image) => image.name),
      ['local.png'],
    );
    assert.equal(refused.length, 1);
    assert.match(
      refused[0]!,
      /Could not read remote\.png: reading it took more than 0\.05 s .*paste the image instead/,
    );
  });

  test('the files are read at once: a batch on a dead remote waits one timeout, not one per file', async () => {
    // first.png's read ends only once second.png's has begun: read one after the other, first.png would time out.
    let secondBegun: () => void = () => undefined;
    const begun = new Promise<void>((resolve) => (secondBegun = resolve));
    const fileSystem: ImageFileSystem<string> = {
      stat: async () => ({ size: 1, isFile: true }),
      readFile: async (uri) => {
        if (uri === 'second.png') secondBegun();
        else await begun;
        return new Uint8Array([1]);
      },
    };
    const { images, refused } = await readImageFiles(named('first.png', 'second.png'), fileSystem, {
      room: 8,
      timeoutMs: 30_000,
    });
    assert.deepEqual(refused, []);
    assert.deepEqual(
      images.map((image) => image.name),
      ['first.png', 'second.png'],
    );
  });

  test('a file that grew past the limit after its stat is refused', async () => {
    const { fileSystem } = fileSystemOf({ 'growing.png': { size: 10, read: new Uint8Array(40 * 1024 * 1024) } });
    const { images, refused } = await readImageFiles(named('growing.png'), fileSystem, { room: 8 });
    assert.deepEqual(images, []);
    assert.match(refused[0]!, /growing\.png is 40 MiB; FiCoCo takes image files up to 32 MiB/);
  });
});
