/**
 * The chat's replies against a real engine process on the fixture model: streaming into the conversation, the
 * measured speedup after a reduced answer, Stop, the grace period that ends a reply that will not stop, a crash, a
 * settings error, and a measurement that fails without touching the answer.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { StatusActivities } from '../../src/extension/activity';
import { Conversation, ImageInput } from '../../src/extension/conversation';
import { type AnswerEngine, EngineClient, EngineError } from '../../src/client/engineClient';
import { RemoteEngine } from '../../src/client/remoteEngine';
import {
  ReplyPace,
  Replies,
  ReplySettings,
  STOPPING_AFTER_LOAD,
  STOP_GRACE_MS,
  stopGraceMs,
} from '../../src/extension/replies';
import { SettingsError } from '../../src/extension/settings';
import { stoppingLabel } from '../../src/common/prefillProgress';
import { SpeedupCache } from '../../src/extension/speedup';
import { startServe } from '../../tools/serveProcess';
import { screenshotPng } from '../../tools/screenshotPng';
import { type AnswerStatsView, type HostMessage, type Reply, providerLine } from '../../src/protocol/webview';
import { writeEndlessModel } from '../helpers/endlessModel';

const ROOT = path.join(__dirname, '..', '..');
const HOST = path.join(ROOT, 'src', 'host', 'main.ts');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const SHAPES: ImageInput = {
  name: 'shapes.png',
  dataBase64: fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')).toString('base64'),
  format: 'png',
};
/** The fixture model, unable to end an answer by itself: a reply stops at its token limit or at Stop, never early. */
const MODEL_DIR = writeEndlessModel();
const SETTINGS: ReplySettings = {
  engine: 'local',
  engineModel: '',
  model: { modelDir: MODEL_DIR, provider: 'cpu', threads: 1 },
  reduction: undefined,
  maxNewTokens: 8,
  temperature: 0,
  topP: 1,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1,
  seed: undefined,
};
const REDUCED: ReplySettings = {
  ...SETTINGS,
  reduction: { method: 'ficoco-v', budget: { tokens: 12 }, budgetLabel: '12', params: {} },
};
/** Long enough to stop. */
const LONG: ReplySettings = { ...SETTINGS, maxNewTokens: 200 };

describe('chat replies on a real engine process', () => {
  let engine: EngineClient;
  let conversation: Conversation;
  let posted: HostMessage[];
  let statuses: string[];
  let warnings: string[];
  let failures: unknown[];
  let fallbacks: string[];
  let activity: number;
  let replies: Replies;
  let onShowAnswer: (stats: AnswerStatsView) => void;
  /** called as each piece of an answer's text comes (counted from 1), while the engine still generates */
  let onText: (pieces: number) => void;
  /** called with each progress label a reply posts */
  let onProgressLabel: (label: string) => void;
  let onWarning: () => void;
  /** called once, as the next reply starts (before its request is sent) */
  let onStart: () => void;
  /** awaited as a reply sets up its remote engine, where the extension reads the API key from secret storage */
  let readingApiKey: () => Promise<void>;

  before(() => {
    engine = new EngineClient({ hostModule: HOST, execArgv: ['--import', 'tsx'] });
  });
  after(() => {
    engine.dispose();
    fs.rmSync(MODEL_DIR, { recursive: true, force: true });
  });
  beforeEach(() => {
    conversation = new Conversation();
    [posted, statuses, warnings, failures, fallbacks, activity] = [[], [], [], [], [], 0];
    onShowAnswer = () => undefined;
    onText = () => undefined;
    onProgressLabel = () => undefined;
    onWarning = () => undefined;
    onStart = () => undefined;
    readingApiKey = async () => undefined;
    replies = newReplies();
  });

  function newReplies(stopGraceMs?: number, stopNoticeFromMs?: number, answering: AnswerEngine = engine): Replies {
    const values = new Map<string, unknown>();
    return new Replies({
      engine: answering,
      remote: async (baseUrl, model) => {
        await readingApiKey();
        return new RemoteEngine({ baseUrl, model });
      },
      conversation,
      speedups: new SpeedupCache(
        {
          get: <T>(key: string) => values.get(key) as T | undefined,
          update: async (key, value) => void values.set(key, value),
        },
        'test',
      ),
      post: (message) => {
        posted.push(message);
        if (message.type === 'replyText') onText(posted.filter((earlier) => earlier.type === 'replyText').length);
        if (message.type === 'replyProgress') onProgressLabel(message.label);
      },
      status: new StatusActivities({
        settingsGeneration: 0,
        busy: (label) => {
          statuses.push(label);
          const start = onStart;
          onStart = () => undefined;
          start();
        },
        showAnswer: (stats) => {
          statuses.push(stats.speedup === undefined ? 'answer' : 'speedup');
          onShowAnswer(stats);
        },
        showWithoutStats: (server) => statuses.push(`no stats from ${server}`),
        idle: () => statuses.push('idle'),
      }),
      log: {
        info: () => undefined,
        warn: (line) => {
          warnings.push(line);
          onWarning();
        },
      },
      onFailure: (error) => failures.push(error),
      onProviderFallback: (reason) => fallbacks.push(reason),
      activity: { busy: () => activity++, idle: () => activity-- },
      ...(stopGraceMs === undefined ? {} : { stopGraceMs }),
      ...(stopNoticeFromMs === undefined ? {} : { stopNoticeFromMs }),
    });
  }

  /**
   * Freezes the engine process as the next reply starts and runs `act` on it once the request is on its way: the
   * fixture model answers in a few milliseconds, often before its first text reaches this process.
   */
  async function freezeAtStart(act: (frozen: number) => void): Promise<void> {
    // An answer first, so the model is loaded and the next reply goes straight to the engine.
    await replies.run(turn(), 'answer', 'what is in the picture ?', [SHAPES], () => SETTINGS);
    onStart = () => {
      const frozen = engine.processId!;
      process.kill(frozen, 'SIGSTOP');
      setTimeout(() => act(frozen), 20);
    };
  }

  /**
   * Asks about a 1920 × 1080 screenshot on the tiled fixture (several tower passes, so progress to report); `started`
   * gets the turn before the reply runs.
   */
  async function askAboutScreenshot(started: (turnId: string) => void = () => undefined): Promise<string> {
    const screenshot: ImageInput = {
      name: 'screenshot.png',
      dataBase64: screenshotPng().toString('base64'),
      format: 'png',
    };
    conversation.addPending([screenshot]);
    const turnId = conversation.startTurn('what is shown ?')!.turn.id;
    const tiled = {
      ...SETTINGS,
      model: { ...SETTINGS.model, modelDir: path.join(FIXTURES, 'tiny-llava-onevision-qwen2') },
    };
    started(turnId);
    await replies.run(turnId, 'answer', 'what is shown ?', [screenshot], () => tiled);
    return turnId;
  }

  /** The progress labels posted to `turnId`'s replies, in order. */
  function progressLabels(turnId: string): string[] {
    return posted.flatMap((message) =>
      message.type === 'replyProgress' && message.turnId === turnId ? [message.label] : [],
    );
  }

  /** A new turn asking `question` about the shapes image. */
  function turn(question = 'what is in the picture ?'): string {
    conversation.addPending([SHAPES]);
    return conversation.startTurn(question)!.turn.id;
  }

  test('an answer streams into the conversation and finishes with its stats; the status bar follows', async () => {
    const turnId = turn();
    await replies.run(turnId, 'answer', 'what is in the picture ?', [SHAPES], () => SETTINGS);
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.status, 'done');
    const streamed = posted.flatMap((message) => (message.type === 'replyText' ? [message.text] : [])).join('');
    assert.equal(streamed, answer.text);
    assert.equal(answer.stats?.generatedTokens, 8);
    assert.equal(answer.stats?.speedup, undefined, 'no speedup without reduction');
    assert.equal(statuses[0], 'Loading model');
    assert.deepEqual(statuses.slice(-2), ['answer', 'idle']);
    assert.equal(activity, 0, 'busy and idle balance');
    await replies.run(turn(), 'answer', 'what is in the picture ?', [SHAPES], () => SETTINGS);
    assert.ok(
      statuses.includes('Answering') && statuses.lastIndexOf('Loading model') === 0,
      'the second answer reuses the loaded model',
    );
  });

  test('a reduced answer gets its measured speedup once it is done', async () => {
    const turnId = turn();
    await replies.run(turnId, 'answer', 'what is in the picture ?', [SHAPES], () => REDUCED);
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.stats?.reduction?.method, 'ficoco-v');
    assert.equal(answer.stats?.reduction?.rule, 'setting');
    const speedup = answer.stats!.speedup!;
    assert.ok(speedup.ratio > 0 && speedup.pairs >= 3, 'a measured speedup');
    assert.match(speedup.timed, /prefill .* on cpu/);
    assert.ok(
      statuses.indexOf('answer') < statuses.indexOf('Measuring the speedup') &&
        statuses.indexOf('Measuring the speedup') < statuses.indexOf('speedup'),
      'shown first without, then measured, then with the speedup',
    );
    const pairs = statuses.filter((label) => label.startsWith('Measuring the speedup: '));
    assert.equal(pairs[0], `Measuring the speedup: 0 of ${speedup.pairs} pairs`);
    assert.equal(pairs.at(-1), `Measuring the speedup: ${speedup.pairs} of ${speedup.pairs} pairs`);
    // Another size (200 × 60, not 96 × 64), the same reduction: the model reads both as the same tokens, so the
    // figure is kept, not re-measured.
    statuses = [];
    const banner: ImageInput = {
      name: 'banner.png',
      dataBase64: fs.readFileSync(path.join(FIXTURES, 'images', 'banner.png')).toString('base64'),
      format: 'png',
    };
    conversation.addPending([banner]);
    const again = conversation.startTurn('what is in the picture ?')!.turn.id;
    await replies.run(again, 'answer', 'what is in the picture ?', [banner], () => REDUCED);
    assert.deepEqual(conversation.turn(again)!.answer.stats?.speedup, speedup);
    assert.ok(!statuses.includes('Measuring the speedup'));
    assert.deepEqual(fallbacks, [], 'the CPU was asked for and used');
  });

  test("auto takes the fixture model's default and says which rule chose it", async () => {
    const turnId = turn();
    await replies.run(turnId, 'answer', 'what is in the picture ?', [SHAPES], () => ({
      ...REDUCED,
      reduction: { method: 'auto', budget: { tokens: 3 }, budgetLabel: '3', params: {} },
    }));
    const reduction = conversation.turn(turnId)!.answer.stats?.reduction;
    assert.equal(reduction?.rule, 'default');
    assert.equal(reduction?.method, 'ficoco-v');
    assert.equal(reduction?.budget, '11%', 'the budget setting is not used with auto');
    assert.match(reduction!.why, /nothing was measured or published for this model/);
  });

  test(
    "a provider that cannot load is notified once per session; each answer's details say why",
    { skip: process.platform === 'win32' && 'DirectML may load on Windows; this needs a provider that fails' },
    async () => {
      const onDml = { ...SETTINGS, model: { ...SETTINGS.model, provider: 'dml' as const } };
      const turnIds = [turn(), turn()];
      for (const turnId of turnIds)
        await replies.run(turnId, 'answer', 'what is in the picture ?', [SHAPES], () => onDml);
      assert.equal(fallbacks.length, 1, fallbacks.join('\n'));
      assert.match(fallbacks[0], /^dml could not be used .*running on CPU instead/);
      const { stats } = conversation.turn(turnIds[1])!.answer;
      assert.equal(stats?.provider, 'cpu');
      assert.match(providerLine(stats!), /^cpu — dml could not be used .*running on CPU instead/);
    },
  );

  test('a reply waiting for its text says how far the engine has read the screenshot, then the prompt', async () => {
    const turnId = await askAboutScreenshot();
    const labels = progressLabels(turnId);
    const parts = labels.filter((label) => label.startsWith('Reading the image: part')).length;
    assert.ok(parts > 1);
    assert.deepEqual(labels.slice(0, parts + 1), [
      'Reading the image',
      ...Array.from({ length: parts }, (_, i) => `Reading the image: part ${i + 1} of ${parts}`),
    ]);
    assert.equal(labels.at(-1), 'Reading the prompt: 100 %');
    assert.ok(labels.slice(parts + 1).every((label) => /^Reading the prompt: \d+ %$/.test(label)));
    // The status bar says the same, until the text comes.
    const shown = statuses.filter((label) => label.startsWith('Reading'));
    assert.deepEqual(shown, labels);
    assert.ok(statuses.indexOf('Answering') > statuses.lastIndexOf(labels.at(-1)!));
    const kinds = posted.map((message) => message.type);
    assert.ok(kinds.lastIndexOf('replyProgress') < kinds.indexOf('replyText'));
  });

  test(
    'stopped while it reads a screenshot, a reply says it waits for the step in progress, and nothing after',
    { skip: process.platform === 'win32' ? 'needs SIGSTOP' : false },
    async () => {
      replies = newReplies(undefined, 0);
      // The first pass's report carries the engine's estimate of the second: Stop comes as that pass runs. The engine,
      // frozen meanwhile, goes on with it when thawed and reports it before it reads the cancel. On a busy machine
      // this small model may read the whole screenshot before the report is handled here; then the stop did not come
      // during the prefill (the answer has text, or was not cancelled), and the question is asked again.
      const stoppedDuringPrefill = async (): Promise<string> => {
        for (let attempt = 1; ; attempt++) {
          const attemptTurn = await askAboutScreenshot((asked) => {
            onProgressLabel = (label) => {
              if (!label.startsWith('Reading the image: part 1 of')) return;
              onProgressLabel = () => undefined;
              const frozen = engine.processId!;
              process.kill(frozen, 'SIGSTOP');
              replies.stop(asked);
              setTimeout(() => process.kill(frozen, 'SIGCONT'), 100);
            };
          });
          const { answer } = conversation.turn(attemptTurn)!;
          if (answer.stopReason === 'cancelled' && answer.text === '') return attemptTurn;
          assert.ok(attempt < 5, `no stop came during the prefill in ${attempt} attempts`);
        }
      };
      const turnId = await stoppedDuringPrefill();
      const labels = progressLabels(turnId);
      const stopping = labels.findIndex((label) => label.startsWith('Stopping'));
      assert.ok(stopping > 0, labels.join(' | '));
      assert.match(labels[stopping], /^Stopping after the current step, about \d+ s$/);
      assert.equal(labels.length, stopping + 1, 'the pass that ends after Stop does not say "Reading" again');
      assert.ok(statuses.includes(labels[stopping]));
      assert.equal(conversation.turn(turnId)!.answer.stopReason, 'cancelled');
    },
  );

  test('Stop ends a reply between tokens, as cancelled', async () => {
    const turnId = turn();
    // The fixture streams faster than Stop travels: the engine waits, frozen, until Stop is on its way.
    onText = (pieces) => {
      if (pieces !== 1) return;
      const frozen = engine.processId!;
      if (process.platform !== 'win32') process.kill(frozen, 'SIGSTOP');
      replies.stop(turnId);
      if (process.platform !== 'win32') setTimeout(() => process.kill(frozen, 'SIGCONT'), 20);
    };
    await replies.run(turnId, 'answer', 'is there text in the image ?', [SHAPES], () => LONG);
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.status, 'done');
    assert.equal(answer.stopReason, 'cancelled');
    assert.ok(answer.stats!.generatedTokens < LONG.maxNewTokens);
  });

  test(
    'a reply still running after the grace period ends with the engine process',
    { skip: process.platform === 'win32' ? 'needs SIGSTOP' : false },
    async () => {
      replies = newReplies(50);
      let frozen: number | undefined;
      const turnId = turn();
      // A frozen engine cannot stop; once the grace period is over, it is thawed to receive its end.
      await freezeAtStart((pid) => {
        frozen = pid;
        replies.stop(turnId);
      });
      onWarning = () => process.kill(frozen!, 'SIGCONT');
      await replies.run(turnId, 'answer', 'is there text in the image ?', [SHAPES], () => LONG);
      assert.match(warnings.join('\n'), /did not stop within 50 ms; restarting the engine process/);
      assert.notEqual(engine.processId, frozen, 'the process was ended');
      assert.equal(conversation.turn(turnId)!.answer.stopReason, 'cancelled');
    },
  );

  test(
    "a stop is the reply's until it ends, said once to every page however many ask: the command, then a page",
    { skip: process.platform === 'win32' ? 'needs SIGSTOP' : false },
    async () => {
      const turnId = turn();
      let whileStopping: Reply | undefined;
      // Frozen, the engine cannot end the reply before the pages are told.
      await freezeAtStart((frozen) => {
        replies.stopLatest();
        replies.stop(turnId);
        whileStopping = conversation.turn(turnId)?.answer;
        process.kill(frozen, 'SIGCONT');
      });
      await replies.run(turnId, 'answer', 'is there text in the image ?', [SHAPES], () => LONG);
      assert.equal(whileStopping?.stopping, true, 'a page loaded meanwhile draws the stop from the conversation');
      const told = posted.filter(
        (message) => message.type === 'turnUpdated' && message.turn.id === turnId && message.turn.answer.stopping,
      );
      assert.equal(told.length, 1);
      const { answer } = conversation.turn(turnId)!;
      assert.equal(answer.stopReason, 'cancelled');
      assert.equal(answer.stopping, undefined);
    },
  );

  test('the grace Stop gives: at least the least, twice the slowest run so far, at most a minute', () => {
    assert.equal(stopGraceMs(0), STOP_GRACE_MS);
    assert.equal(stopGraceMs(1_000, 50), 2_000);
    assert.equal(stopGraceMs(12_000), 24_000);
    assert.equal(stopGraceMs(45_000), 60_000);
  });

  test("a reply's longest run: the waits between the engine's reports after its first, and the engine's estimates", () => {
    const pace = new ReplyPace();
    pace.report(undefined, 9_000); // the first report, after the model's load: no run before it is known
    assert.equal(pace.longestMs, 0);
    pace.report(undefined, 9_400);
    pace.report(undefined, 9_700);
    assert.equal(pace.longestMs, 400);
    // The prompt's start: a 7B model's first chunk on a CPU, foretold from the image's passes.
    pace.report(25_000, 9_710);
    assert.equal(pace.longestMs, 25_000);
    assert.equal(stopGraceMs(pace.longestMs), 50_000);
    // What a stop then waits for: the rest of that chunk, by the engine's estimate; none once a report has none.
    assert.equal(pace.remainingMs(19_710), 15_000);
    assert.equal(pace.remainingMs(40_000), 0);
    assert.equal(stoppingLabel(15_000), 'Stopping after the current step, about 15 s');
    assert.equal(stoppingLabel(300), 'Stopping after the current step, about 1 s');
    pace.report(undefined, 34_710);
    assert.equal(pace.remainingMs(34_800), undefined);
  });

  test(
    "Stop waits for a run as long as twice the reply's slowest so far before it ends the engine process",
    { skip: process.platform === 'win32' ? 'needs SIGSTOP' : false },
    async () => {
      replies = newReplies(50);
      const turnId = turn();
      let frozen: number | undefined;
      let firstFrozenAt: number | undefined;
      let stopped = false;
      // Frozen for 400 ms at its first text, the engine's next report comes that much later (after any it had already
      // sent): a slow run, as a 7B prompt chunk on a CPU is. Stopped at a report after that, it stays frozen 300 ms,
      // past the least grace of 50 ms.
      const freezeFor = (ms: number) => {
        process.kill(frozen!, 'SIGSTOP');
        setTimeout(() => process.kill(frozen!, 'SIGCONT'), ms);
      };
      onText = (pieces) => {
        if (pieces === 1) {
          frozen = engine.processId;
          firstFrozenAt = performance.now();
          freezeFor(400);
        }
        if (stopped || performance.now() - firstFrozenAt! < 390) return;
        stopped = true;
        freezeFor(300);
        replies.stop(turnId);
      };
      await replies.run(turnId, 'answer', 'is there text in the image ?', [SHAPES], () => LONG);
      assert.deepEqual(warnings, [], 'no restart');
      assert.equal(engine.processId, frozen, 'the same engine process');
      assert.equal(conversation.turn(turnId)!.answer.stopReason, 'cancelled');
    },
  );

  /**
   * An engine that answers one question at a time, as the engine process does: after `loadMs` the first time, each
   * answer in `pieces` pieces 20 ms apart; a question cancelled before its turn fails as cancelled.
   */
  function serialEngine(pieces: number, loadMs = 0): AnswerEngine & { stops: number } {
    let queue: Promise<unknown> = Promise.resolve();
    let loaded = false;
    const serial = {
      stops: 0,
      processId: undefined,
      stop: () => void serial.stops++,
      dispose: () => undefined,
      ask: (
        _model: unknown,
        { question }: { question: string },
        listeners: { text(piece: string): void },
        token?: CancellationTokenSource['token'],
      ) => {
        const answer = queue.then(async () => {
          if (!loaded) await sleep(loadMs);
          loaded = true;
          if (token?.isCancellationRequested) throw new EngineError('cancelled before it started', 'cancelled');
          let text = '';
          for (let piece = 0; piece < pieces && !token?.isCancellationRequested; piece++) {
            await sleep(20);
            listeners.text(`${question} ${piece}. `);
            text += `${question} ${piece}. `;
          }
          return { text, stopReason: token?.isCancellationRequested ? 'cancelled' : 'max-tokens' } as const;
        });
        queue = answer.catch(() => undefined);
        return answer;
      },
    };
    return serial;
  }

  test('Stop on a question waiting behind another answer cancels it alone; the engine goes on', async () => {
    // The first answer streams for a second: the stop comes well inside it, however slow the machine.
    const serial = serialEngine(50);
    replies = newReplies(50, undefined, serial);
    await replies.run(turn(), 'answer', 'warm', [SHAPES], () => SETTINGS);
    const [first, second] = [turn(), turn()];
    const answering = replies.run(first, 'answer', 'first', [SHAPES], () => SETTINGS);
    const waiting = replies.run(second, 'answer', 'second', [SHAPES], () => SETTINGS);
    await sleep(60);
    replies.stopLatest();
    await Promise.all([answering, waiting]);
    assert.equal(serial.stops, 0, 'the engine was not ended');
    assert.equal(conversation.turn(first)!.answer.stopReason, 'max-tokens');
    assert.equal(conversation.turn(first)!.answer.text.split('. ').length - 1, 50);
    assert.equal(conversation.turn(second)!.answer.stopReason, 'cancelled');
    assert.equal(conversation.turn(second)!.answer.text, '');
  });

  test("the Stop command stops the newest answer, not an earlier answer's speedup measurement", async () => {
    const [measured, newest] = [turn(), turn()];
    // The measurement of the first answer joins the replies in flight after the second question was asked.
    onShowAnswer = () => {
      onShowAnswer = () => undefined;
      onText = () => {
        onText = () => undefined;
        replies.stopLatest();
      };
    };
    await Promise.all([
      replies.run(measured, 'answer', 'what is in the picture ?', [SHAPES], () => REDUCED),
      replies.run(newest, 'answer', 'is there text in the image ?', [SHAPES], () => LONG),
    ]);
    const { answer } = conversation.turn(newest)!;
    assert.equal(answer.stopReason, 'cancelled');
    assert.ok(answer.stats!.generatedTokens < LONG.maxNewTokens);
    assert.ok(conversation.turn(measured)!.answer.stats?.speedup, 'the measurement ran to its end');
  });

  test('Compare asked twice while it runs streams one comparison, which Stop reaches', async () => {
    const serial = serialEngine(5);
    replies = newReplies(50, undefined, serial);
    const turnId = turn();
    await replies.run(turnId, 'answer', 'first', [SHAPES], () => SETTINGS);
    conversation.startFull(turnId);
    const once = replies.run(turnId, 'full', 'first', [SHAPES], () => SETTINGS);
    const twice = replies.run(turnId, 'full', 'first', [SHAPES], () => SETTINGS);
    await Promise.all([once, twice]);
    assert.equal(conversation.turn(turnId)!.full!.text.split('. ').length - 1, 5);
  });

  test('Stop while the model loads ends the reply once the load is done, and says so; the load is kept', async () => {
    const serial = serialEngine(3, 1000);
    replies = newReplies(50, undefined, serial);
    const turnId = turn();
    const asked = replies.run(turnId, 'answer', 'first', [SHAPES], () => SETTINGS);
    await sleep(30);
    replies.stop(turnId);
    assert.equal(conversation.turn(turnId)!.answer.progress, STOPPING_AFTER_LOAD, 'a page drawn again says so too');
    await asked;
    assert.equal(serial.stops, 0, 'the load was not cut short');
    assert.equal(conversation.turn(turnId)!.answer.stopReason, 'cancelled');
    assert.deepEqual(progressLabels(turnId), [STOPPING_AFTER_LOAD]);
  });

  /**
   * Sets the engine process to be frozen (`freeze`, which calls back with its id), then asks a long question and,
   * once the process is frozen, a second one behind it, and kills the process: the first fails as a crash with the
   * conversation kept; the second is asked again on a fresh process.
   */
  async function crashWithQuestionQueued(freeze: (frozen: (pid: number) => void) => Promise<void>): Promise<void> {
    let waiting: Promise<void> | undefined;
    await freeze((pid) => {
      waiting = replies.run(second, 'answer', 'what is in the picture ?', [SHAPES], () => SETTINGS);
      setTimeout(() => process.kill(pid, 'SIGKILL'), 100);
    });
    const [first, second] = [turn(), turn()];
    await replies.run(first, 'answer', 'is there text in the image ?', [SHAPES], () => LONG);
    await waiting;
    const { answer } = conversation.turn(first)!;
    assert.equal(answer.status, 'error');
    assert.match(answer.error!, /stopped unexpectedly .* The conversation is kept; ask again to continue\./);
    assert.ok(failures[0] instanceof EngineError && failures[0].kind === 'crashed', String(failures[0]));
    assert.equal(failures.length, 1, `only the reply in flight failed: ${failures.join(' | ')}`);
    const after = conversation.turn(second)!.answer;
    assert.equal(after.status, 'done', after.error);
    assert.ok(after.text.length > 0);
  }

  test(
    'a crash fails only the reply in flight and keeps the conversation; a question waiting behind it is asked again',
    { skip: process.platform === 'win32' ? 'needs SIGSTOP' : false },
    () =>
      // Frozen at its first text, the process takes the second question into its queue and dies there.
      crashWithQuestionQueued(async (frozen) => {
        await replies.run(turn(), 'answer', 'what is in the picture ?', [SHAPES], () => SETTINGS);
        onText = () => {
          onText = () => undefined;
          const pid = engine.processId!;
          process.kill(pid, 'SIGSTOP');
          frozen(pid);
        };
      }),
  );

  test(
    'a crash before the reply in flight reports anything fails it alone; the question behind it is asked again',
    { skip: process.platform === 'win32' ? 'needs SIGSTOP' : false },
    // Frozen as the first question is sent, before it reports any progress or text.
    () => crashWithQuestionQueued(freezeAtStart),
  );

  test('a question whose own run ends its process fails as a crash, once: it is not asked again', async () => {
    const turnId = turn();
    const started: (number | undefined)[] = [];
    await freezeAtStart((frozen) => {
      started.push(frozen);
      process.kill(frozen, 'SIGKILL');
    });
    await replies.run(turnId, 'answer', 'is there text in the image ?', [SHAPES], () => LONG);
    assert.equal(conversation.turn(turnId)!.answer.status, 'error');
    assert.ok(failures[0] instanceof EngineError && failures[0].kind === 'crashed');
    assert.equal(engine.processId, undefined, 'no process was started again for it');
  });

  test(
    'Stop while a new reduction warms up waits for the warm-up; the model stays loaded',
    { skip: process.platform === 'win32' ? 'needs SIGSTOP' : false },
    async () => {
      replies = newReplies(50);
      const warming: ReplySettings = {
        ...REDUCED,
        model: { ...REDUCED.model, warmUp: { method: 'fastv', budget: { tokens: 12 }, params: {} } },
      };
      const turnId = turn();
      let frozen: number | undefined;
      // The warm-up is a load of its own; frozen, it outlasts the least grace many times over.
      await freezeAtStart((pid) => {
        frozen = pid;
        replies.stop(turnId);
        setTimeout(() => process.kill(pid, 'SIGCONT'), 500);
      });
      await replies.run(turnId, 'answer', 'is there text in the image ?', [SHAPES], () => warming);
      assert.deepEqual(warnings, [], 'the engine process was not ended');
      assert.equal(engine.processId, frozen);
      assert.equal(conversation.turn(turnId)!.answer.stopReason, 'cancelled');
      assert.deepEqual(progressLabels(turnId), [STOPPING_AFTER_LOAD]);
    },
  );

  test('settings that cannot be used fail the reply with their message, for the caller to offer the setting', async () => {
    const turnId = turn();
    await replies.run(turnId, 'answer', 'q', [SHAPES], () => {
      throw new SettingsError('ficoco.modelPath is "models"; set it to an absolute path.', 'ficoco.modelPath');
    });
    assert.equal(conversation.turn(turnId)!.answer.error, 'ficoco.modelPath is "models"; set it to an absolute path.');
    assert.ok(failures[0] instanceof SettingsError);
    assert.equal(activity, 0);
  });

  test('a speedup measurement that fails is logged; the answer stays done', async () => {
    const turnId = turn();
    // The engine dies right after the reduced answer, while its speedup is being measured.
    onShowAnswer = (stats) => {
      if (stats.speedup === undefined) process.kill(engine.processId!, 'SIGKILL');
    };
    await replies.run(turnId, 'answer', 'what is in the picture ?', [SHAPES], () => REDUCED);
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.status, 'done');
    assert.equal(answer.stats?.speedup, undefined);
    assert.match(
      warnings.join('\n'),
      /The speedup of this answer could not be measured: The FiCoCo engine process stopped unexpectedly/,
    );
    assert.deepEqual(failures, [], 'nothing is offered as a failure of the answer');
  });
  test('ficoco.engine pointing at ficoco serve: the same answer, progress, stats and a measured speedup', async () => {
    const local = turn();
    await replies.run(local, 'answer', 'what is in the picture ?', [SHAPES], () => REDUCED);
    const here = conversation.turn(local)!.answer;
    const localProgress = progressLabels(local);
    posted = [];
    // A new conversation: the remote question has no earlier turn either.
    conversation = new Conversation();
    replies = newReplies();
    const server = await startServe('--model', SETTINGS.model.modelDir, '--threads', '1');
    try {
      statuses = [];
      const remote = turn();
      await replies.run(remote, 'answer', 'what is in the picture ?', [SHAPES], () => ({
        ...REDUCED,
        engine: `${server.url}/v1`,
      }));
      const there = conversation.turn(remote)!.answer;
      assert.equal(there.status, 'done');
      assert.equal(there.text, here.text);
      assert.ok(localProgress.length >= 2, `the local reply reported progress: ${localProgress}`);
      assert.deepEqual(progressLabels(remote), localProgress, 'the server streams the same progress');
      assert.deepEqual(there.stats?.visualTokens, here.stats?.visualTokens);
      assert.deepEqual(there.stats?.imageReductions, here.stats?.imageReductions, 'the overlay comes along');
      assert.ok(there.stats?.speedup && there.stats.speedup.pairs > 0, 'measured through the server');
      assert.equal(statuses[0], 'Answering', 'a remote engine has no model to load here');
      // The extension's defaults through the server: `auto` (sent with empty params), and a question without an image
      // (a one-part content array).
      const plain = turn();
      await replies.run(plain, 'answer', 'what is in the picture ?', [], () => ({
        ...SETTINGS,
        reduction: { method: 'auto', budget: { tokens: 3 }, budgetLabel: '3', params: {} },
        engine: `${server.url}/v1`,
      }));
      const { answer } = conversation.turn(plain)!;
      assert.equal(answer.status, 'done', answer.error);
    } finally {
      await server.close();
    }
  });

  /** How a scripted server answers a chat completion (`request`, to read what was asked). */
  type Respond = (response: http.ServerResponse, request: http.IncomingMessage) => void | Promise<void>;
  /** A chunk of a streamed chat completion: a choice's delta, its finish reason, fields beside `choices`. */
  type CompletionChunk = { delta: object; finish?: string | null; beside?: object };

  /**
   * Runs `use` with the address of an OpenAI-compatible server on 127.0.0.1 that lists `model` and answers chat
   * completions with `respond`, and the requests it has had ("GET /v1/models"); the server is closed after it.
   */
  async function withServer<T>(
    model: string,
    respond: Respond,
    use: (url: string, requests: readonly string[]) => Promise<T>,
  ): Promise<T> {
    const requests: string[] = [];
    const server = http.createServer(async (request, response) => {
      requests.push(`${request.method} ${request.url}`);
      if (request.url === '/v1/models') {
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ object: 'list', data: [{ id: model, object: 'model' }] }));
        return;
      }
      await respond(response, request);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      return await use(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, requests);
    } finally {
      server.close();
      server.closeAllConnections();
    }
  }

  /** One chunk of a streamed chat completion as a server-sent event: a choice's delta, its finish reason, fields beside. */
  function completionEvent(model: string, { delta, finish = null, beside = {} }: CompletionChunk): string {
    return `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 0, model, choices: [{ index: 0, delta, finish_reason: finish }], ...beside })}\n\n`;
  }

  /** Streams `chunks` (completionEvent), each after its wait, then `data: [DONE]`. */
  function streaming(
    model: string,
    chunks: (CompletionChunk & { afterMs?: number; after?: () => Promise<void> })[],
  ): Respond {
    return async (response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const { afterMs, after, ...chunk } of chunks) {
        if (afterMs) await sleep(afterMs);
        await after?.();
        if (response.destroyed) return;
        response.write(completionEvent(model, chunk));
      }
      response.end('data: [DONE]\n\n');
    };
  }

  /** Asks about the shapes image through a scripted server (withServer); resolves with the turn's id and the address. */
  function askServer(model: string, respond: Respond): Promise<{ turnId: string; url: string }> {
    return withServer(model, respond, async (url) => {
      const turnId = turn();
      await replies.run(turnId, 'answer', 'what is in the picture ?', [SHAPES], () => ({ ...REDUCED, engine: url }));
      return { turnId, url };
    });
  }

  /** Asks through a server that streams `chunks` (streaming). */
  const askStreamingServer = (model: string, chunks: Parameters<typeof streaming>[1]) =>
    askServer(model, streaming(model, chunks));

  /** The question RemoteEngine sends for a reply about the shapes image. */
  const QUESTION = {
    question: 'what is in the picture ?',
    images: [{ name: SHAPES.name, dataBase64: SHAPES.dataBase64 }],
    maxNewTokens: REDUCED.maxNewTokens,
    temperature: 0,
    topP: 1,
    seed: 0,
  };

  /**
   * The `fields` of each chat completion a server is sent for a reply about the shapes image with each of `settings`,
   * those it has.
   */
  async function fieldsSent(fields: string[], ...settings: ReplySettings[]): Promise<Record<string, unknown>[]> {
    const asked: Record<string, unknown>[] = [];
    const recording: Respond = async (response, request) => {
      let body = '';
      for await (const piece of request) body += piece;
      const sent = JSON.parse(body) as Record<string, unknown>;
      asked.push(Object.fromEntries(fields.filter((field) => field in sent).map((field) => [field, sent[field]])));
      await streaming('sampled', [{ delta: { content: 'a red circle' }, finish: 'stop' }])(response, request);
    };
    await withServer('sampled', recording, async (url) => {
      for (const each of settings)
        await replies.run(turn(), 'answer', 'what is in the picture ?', [SHAPES], () => ({ ...each, engine: url }));
    });
    return asked;
  }

  test('the sampling settings reach a server as its fields; those left off are not sent', async () => {
    const sampled = { ...REDUCED, temperature: 0.7, topP: 0.9, topK: 40, minP: 0.05, repetitionPenalty: 1.1 };
    assert.deepEqual(
      await fieldsSent(['temperature', 'top_p', 'top_k', 'min_p', 'repetition_penalty'], sampled, REDUCED),
      [
        { temperature: 0.7, top_p: 0.9, top_k: 40, min_p: 0.05, repetition_penalty: 1.1 },
        // A server other than ficoco serve may refuse a field it does not know (an older vLLM refuses top_k 0).
        { temperature: 0, top_p: 1 },
      ],
    );
  });

  test('a sampled question asked again sends a server a new seed; ficoco.seed sends that one every time', async () => {
    const sampled = { ...REDUCED, temperature: 0.7 };
    const [first, second] = await fieldsSent(['seed'], sampled, sampled);
    assert.notEqual(first!.seed, second!.seed, 'asked again, the server may answer differently');
    const fixed = { ...sampled, seed: 7 };
    assert.deepEqual(await fieldsSent(['seed'], fixed, fixed), [{ seed: 7 }, { seed: 7 }]);
    // Greedy, the seed changes nothing: the server is sent 0, as before.
    assert.deepEqual(await fieldsSent(['seed'], REDUCED), [{ seed: 0 }]);
  });

  /** Asserts that a reply through a server that answers with `respond` failed with a message matching `message`. */
  async function assertReplyFails(respond: Respond, message: RegExp): Promise<void> {
    const { turnId } = await askServer('broken', respond);
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.status, 'error', `${answer.status}: ${answer.text}`);
    assert.match(answer.error ?? '', message);
  }

  test("a server's progress the extension cannot read is passed over; the answer goes on", async () => {
    // A newer server might report a stage this client does not know: the reply keeps the reports it can read.
    const { turnId } = await askStreamingServer('newer', [
      { delta: {}, beside: { ficoco: { progress: { stage: 'video', done: 0, total: 3 } } } },
      { delta: {}, beside: { ficoco: { progress: 'soon' } } },
      { delta: {}, beside: { ficoco: { progress: { stage: 'prompt', done: 1, total: 4 } } } },
      { delta: { content: 'a red circle' }, finish: 'stop' },
    ]);
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.status, 'done');
    assert.equal(answer.text, 'a red circle');
    assert.deepEqual(progressLabels(turnId), ['Reading the prompt: 25 %']);
  });

  test("a server's flood of progress reaches the reply at a bounded rate, its latest report last", async () => {
    const reports = 5000;
    const last = `Reading the prompt: ${Math.floor((100 * (reports - 1)) / reports)} %`;
    const latestShown = (label: string) =>
      posted.some((message) => message.type === 'replyProgress' && message.label === label);
    const started = performance.now();
    const { turnId } = await askStreamingServer('flooding', [
      ...Array.from({ length: reports }, (_, done) => ({
        delta: {},
        beside: { ficoco: { progress: { stage: 'prompt', done, total: reports } } },
      })),
      // The answer once the latest report has reached the reply (or 10 s passed): a client slowed by a busy machine
      // reads the flood well after it was sent, and the answer beginning rightly drops a report still held back.
      { delta: { content: 'a red circle' }, finish: 'stop', after: () => until(() => latestShown(last), 10_000) },
    ]);
    const seconds = (performance.now() - started) / 1000;
    const labels = progressLabels(turnId);
    assert.equal(conversation.turn(turnId)!.answer.text, 'a red circle');
    // 50 at once, then 10 a second: what the rate allows in the time the question took.
    assert.ok(labels.length >= 1 && labels.length <= 50 + Math.ceil(10 * seconds), `${labels.length} in ${seconds} s`);
    assert.equal(labels[0], 'Reading the prompt: 0 %');
    assert.equal(labels.at(-1), last);
  });

  test('a progress listener that throws when a held-back report is due fails the answer, not the process', async () => {
    // Past the burst of 50, reports wait for the rate limit's timer, which calls the listener outside the stream.
    const flood = streaming('flooding', [
      ...Array.from({ length: 60 }, (_, done) => ({
        delta: {},
        beside: { ficoco: { progress: { stage: 'prompt', done, total: 60 } } },
      })),
      { delta: { content: 'a red circle' }, finish: 'stop', afterMs: 2000 },
    ]);
    let calls = 0;
    const progress = () => {
      if (++calls > 50) throw new Error('the listener broke');
    };
    await withServer('flooding', flood, (url) =>
      assert.rejects(
        new RemoteEngine({ baseUrl: url }).ask(SETTINGS.model, QUESTION, { text: () => undefined, progress }),
        /the listener broke/,
      ),
    );
    assert.equal(calls, 51);
  });

  test('a server that streams on past max_tokens is cut off at the answer length limit', async () => {
    // REDUCED asks for at most maxNewTokens tokens; no token spells more than 256 characters.
    const limit = REDUCED.maxNewTokens * 256;
    const piece = 'x'.repeat(1000);
    const { turnId } = await askStreamingServer('endless', [
      ...Array.from({ length: Math.ceil(limit / piece.length) + 5 }, () => ({ delta: { content: piece } })),
      { delta: {}, finish: 'stop' },
    ]);
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.text.length, limit);
    assert.equal(answer.status, 'done');
    assert.equal(answer.stopReason, 'max-tokens');
  });

  test('a server other than ficoco serve: the answer, and the status bar says reduction is not available', async () => {
    // An OpenAI-compatible server that streams an answer without FiCoCo's extension field (as vLLM or Ollama do).
    const { turnId, url } = await askStreamingServer('other-vlm', [
      { delta: { role: 'assistant', content: 'a red ' } },
      { delta: { content: 'circle' }, finish: 'stop' },
    ]);
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.status, 'done');
    assert.equal(answer.text, 'a red circle');
    assert.equal(answer.stats, undefined);
    assert.equal(statuses.at(-2), `no stats from ${url}`);
  });

  test('Stop on a server ends the reply as cancelled; before the first token, the question fails as cancelled', async () => {
    // The answer's end comes late: Stop after its first piece ends the stream, which the client ends quietly.
    onText = () => replies.stopLatest();
    statuses = [];
    const { turnId, url } = await askStreamingServer('slow', [
      { delta: { content: 'a red' } },
      { delta: { content: ' circle' }, finish: 'stop', afterMs: 2000 },
    ]);
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.text, 'a red');
    assert.equal(answer.stopReason, 'cancelled');
    assert.ok(!statuses.includes(`no stats from ${url}`), 'a stopped answer says nothing of the server');
    // As the local engine: cancelled before its first token, the question fails with kind 'cancelled'.
    const progressFirst = streaming('slow', [
      { delta: {}, beside: { ficoco: { progress: { stage: 'prompt', done: 1, total: 4 } } } },
      { delta: { content: 'a red circle' }, finish: 'stop', afterMs: 2000 },
    ]);
    await withServer('slow', progressFirst, async (url) => {
      const cancel = new CancellationTokenSource();
      const listeners = { text: () => undefined, progress: () => cancel.cancel() };
      await assert.rejects(
        new RemoteEngine({ baseUrl: url }).ask(SETTINGS.model, QUESTION, listeners, cancel.token),
        (error) => error instanceof EngineError && error.kind === 'cancelled',
      );
    });
  });

  test('a question whose token is cancelled before it is asked fails as cancelled; nothing reaches the server', () =>
    withServer(
      'unasked',
      streaming('unasked', [{ delta: { content: 'a red circle' }, finish: 'stop' }]),
      async (url, requests) => {
        // Cancelled before its token was read: vscode-jsonrpc hands out CancellationToken.Cancelled, which never fires.
        const unread = new CancellationTokenSource();
        unread.cancel();
        // Read first: its listeners added after the cancel are called on a timer, after the question would be sent.
        const read = new CancellationTokenSource();
        const token = read.token;
        read.cancel();
        for (const cancelled of [unread.token, token])
          await assert.rejects(
            new RemoteEngine({ baseUrl: url }).ask(SETTINGS.model, QUESTION, { text: () => undefined }, cancelled),
            (error) => error instanceof EngineError && error.kind === 'cancelled',
          );
        assert.deepEqual(requests, []);
      },
    ));

  test('Stop while a server has not yet listed its model ends the reply, and the server sees the request go', async () => {
    // A server stuck before it lists its model (the first request of a session): Stop must not wait on it.
    let listed!: () => void;
    const listing = new Promise<void>((resolve) => (listed = resolve));
    let closed!: () => void;
    const gone = new Promise<void>((resolve) => (closed = resolve));
    const stuck = http.createServer((request) => {
      request.on('close', closed);
      listed();
    });
    await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(stuck.address() as AddressInfo).port}/v1`;
      const turnId = turn();
      const reply = replies.run(turnId, 'answer', 'what is in the picture ?', [SHAPES], () => ({
        ...REDUCED,
        engine: url,
      }));
      await listing;
      replies.stopLatest();
      const ended = await Promise.race([reply.then(() => 'ended'), sleep(5000).then(() => 'still waiting')]);
      assert.equal(ended, 'ended');
      await gone;
      const { answer } = conversation.turn(turnId)!;
      assert.equal(answer.stopReason, 'cancelled');
      assert.deepEqual(failures, []);
    } finally {
      stuck.closeAllConnections();
      stuck.close();
    }
  });

  test('Stop while the API key is read ends the reply as stopped; nothing reaches the server or says Answering', async () => {
    // Secret storage answers when it does (a keyring may prompt): a Stop meanwhile must not be lost.
    let readStarted!: () => void;
    const reading = new Promise<void>((resolve) => (readStarted = resolve));
    let keyRead!: () => void;
    readingApiKey = () => {
      readStarted();
      return new Promise<void>((resolve) => (keyRead = resolve));
    };
    await withServer(
      'unasked',
      streaming('unasked', [{ delta: { content: 'a red circle' }, finish: 'stop' }]),
      async (url, requests) => {
        const turnId = turn();
        const reply = replies.run(turnId, 'answer', 'what is in the picture ?', [SHAPES], () => ({
          ...REDUCED,
          engine: url,
        }));
        await reading;
        replies.stopLatest();
        const stoppedAt = statuses.length;
        keyRead();
        await reply;
        const { answer } = conversation.turn(turnId)!;
        assert.equal(answer.status, 'done', answer.error);
        assert.equal(answer.stopReason, 'cancelled');
        assert.equal(answer.text, '');
        assert.deepEqual(failures, []);
        assert.deepEqual(requests, []);
        // The engine set up after Stop starts no answer: the status bar goes from the stop to idle.
        assert.deepEqual(statuses.slice(stoppedAt), ['idle']);
      },
    );
  });

  test("text a server sent before Stop took effect does not say Answering over the stop's notice", async () => {
    // Stopped at a report of a run that should take a minute; the text sent with it is read after the stop.
    onProgressLabel = () => replies.stopLatest();
    const { turnId } = await askServer('slow', (response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      // One write, so that the client reads both events before the stop can end the stream.
      response.write(
        completionEvent('slow', {
          delta: {},
          beside: { ficoco: { progress: { stage: 'prompt', done: 1, total: 4, nextRunMs: 60_000 } } },
        }) + completionEvent('slow', { delta: { content: 'a red' } }),
      );
    });
    assert.equal(conversation.turn(turnId)!.answer.stopReason, 'cancelled');
    const stoppedAt = statuses.findIndex((label) => label.startsWith('Stopping after the current step'));
    assert.ok(stoppedAt >= 0, `the stop's notice: ${statuses.join(' | ')}`);
    assert.ok(!statuses.slice(stoppedAt).includes('Answering'), statuses.join(' | '));
  });

  test('Stop Answering after a page stopped the newest reply stops the one before it', async () => {
    // Both questions wait for the API key, so neither can end before the stops; nothing may reach the server.
    let keyRead!: () => void;
    const key = new Promise<void>((resolve) => (keyRead = resolve));
    let reads = 0;
    let bothReading!: () => void;
    const reading = new Promise<void>((resolve) => (bothReading = resolve));
    readingApiKey = () => {
      if (++reads === 2) bothReading();
      return key;
    };
    await withServer(
      'unasked',
      streaming('unasked', [{ delta: { content: 'a red circle' }, finish: 'stop' }]),
      async (url, requests) => {
        const settings = () => ({ ...REDUCED, engine: url });
        const older = turn();
        const olderReply = replies.run(older, 'answer', 'what is in the picture ?', [SHAPES], settings);
        const newer = turn();
        const newerReply = replies.run(newer, 'answer', 'and the colour ?', [SHAPES], settings);
        await reading;
        replies.stop(newer);
        replies.stopLatest();
        keyRead();
        await Promise.all([olderReply, newerReply]);
        for (const turnId of [older, newer])
          assert.equal(conversation.turn(turnId)!.answer.stopReason, 'cancelled', turnId);
        assert.deepEqual(requests, []);
      },
    );
  });

  test('a server started again with another model: the next question asks the model it serves now', async () => {
    // As ficoco serve: one model, listed by GET /v1/models; a question for any other is a 404 model_not_found.
    let served = 'tiny-llava-llama';
    const requests: string[] = [];
    const server = http.createServer(async (request, response) => {
      if (request.url === '/v1/models') {
        requests.push(`list ${served}`);
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ object: 'list', data: [{ id: served, object: 'model' }] }));
        return;
      }
      let body = '';
      for await (const piece of request) body += piece;
      const { model } = JSON.parse(body) as { model: string };
      requests.push(`ask ${model}`);
      if (model !== served) {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(
          JSON.stringify({
            error: {
              message: `The model ${model} is not served here; this server has ${served} (GET /v1/models).`,
              type: 'invalid_request_error',
              param: 'model',
              code: 'model_not_found',
            },
          }),
        );
        return;
      }
      await streaming(served, [{ delta: { content: `asked ${served}` }, finish: 'stop' }])(response, request);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
      // One engine for the server's address, as the extension keeps it for the session.
      const engine = new RemoteEngine({ baseUrl: url });
      const ask = () => engine.ask(SETTINGS.model, QUESTION, { text: () => undefined });
      assert.equal((await ask()).text, 'asked tiny-llava-llama');
      served = 'tiny-llava-screens';
      assert.equal((await ask()).text, 'asked tiny-llava-screens');
      assert.deepEqual(requests, [
        'list tiny-llava-llama',
        'ask tiny-llava-llama',
        'ask tiny-llava-llama',
        'list tiny-llava-screens',
        'ask tiny-llava-screens',
      ]);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  test('a server that answers with no stream, or ends one unfinished, fails the reply saying so', async () => {
    // A proxy's sign-in page, a server that ignores stream: true, a stream cut off on the way.
    await assertReplyFails((response) => {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end('<html>Sign in to continue</html>');
    }, /answered with text\/html, not a stream of server-sent events/);
    await assertReplyFails((response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({ choices: [{ index: 0, message: { content: 'a circle' }, finish_reason: 'stop' }] }),
      );
    }, /answered with application\/json, not a stream/);
    await assertReplyFails((response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = { id: 'x', object: 'chat.completion.chunk', created: 0, model: 'broken' };
      response.end(
        `data: ${JSON.stringify({ ...chunk, choices: [{ index: 0, delta: { content: 'The answer is' } }] })}\n\n`,
      );
    }, /ended the answer after 13 characters without finishing it \(no finish_reason\)/);
  });

  test("a server's error in another shape than OpenAI's, or a proxy's error page, is one line with its message", async () => {
    const answering =
      (status: number, type: string, body: string): Respond =>
      (response) => {
        response.writeHead(status, { 'content-type': type });
        response.end(body);
      };
    // nginx in front of a server that is down: its page, named by its title, never pasted whole.
    const page =
      '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>' +
      '\r\n<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n';
    await assertReplyFails(
      answering(502, 'text/html', page),
      /^The engine server at \S+ answered 502: a web page \("502 Bad Gateway"\) instead of an API error: is a proxy on the way, and is ficoco\.engine the address of the server itself\?$/,
    );
    // vLLM's older errors, and servers that send the message as the error itself.
    await assertReplyFails(
      answering(
        400,
        'application/json',
        JSON.stringify({ object: 'error', message: 'max_tokens is too large', code: 400 }),
      ),
      /answered 400: max_tokens is too large\.$/,
    );
    await assertReplyFails(
      answering(500, 'application/json', JSON.stringify({ error: 'model runner crashed' })),
      /answered 500: model runner crashed\.$/,
    );
    // Plain text on one line, cut short; nothing at all by the status line.
    await assertReplyFails(
      answering(500, 'text/plain', `Internal\nServer Error ${'x'.repeat(1000)}`),
      new RegExp(`answered 500: Internal Server Error x{${300 - 'Internal Server Error '.length - 1}}…$`),
    );
    await assertReplyFails(answering(503, 'text/plain', ''), /answered 503: 503 Service Unavailable\.$/);
  });

  test("a base URL without the API's path: the listing's 404 says to give ficoco.engine its path", async () => {
    const notHere: Respond = (response) => {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          error: {
            message: 'GET /models is not part of this API.',
            type: 'invalid_request_error',
            param: null,
            code: 'not_found',
          },
        }),
      );
    };
    const turnId = await withServer('m', notHere, async (url) => {
      const id = turn();
      await replies.run(id, 'answer', 'what is in the picture ?', [SHAPES], () => ({
        ...REDUCED,
        engine: url.replace(/\/v1$/, ''),
      }));
      return id;
    });
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.status, 'error');
    assert.match(
      answer.error ?? '',
      /answered 404: GET \/models is not part of this API\. Is ficoco\.engine the API's base URL, with its path \(e\.g\. http:\/\/gpu-box:8080\/v1\)\?$/,
    );
  });

  test('an error event in a started answer, or a connection cut mid-answer, says so; the text so far stays', async () => {
    const chunk = (content: string) =>
      `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 0, model: 'broken', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
    // ficoco serve's error once a stream has begun: a last event, with no HTTP status of its own.
    const crash = {
      error: { message: 'The engine process crashed.', type: 'server_error', param: null, code: 'engine_restarting' },
    };
    let { turnId } = await askServer('broken', (response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.end(`${chunk('a red')}data: ${JSON.stringify(crash)}\n\n`);
    });
    let { answer } = conversation.turn(turnId)!;
    assert.equal(answer.status, 'error');
    assert.equal(answer.text, 'a red');
    assert.match(
      answer.error ?? '',
      /^The engine server at \S+ sent an error during the answer: The engine process crashed\. The conversation is kept; ask again to continue\.$/,
    );
    // The server's process ends, or a proxy drops the connection, while it streams.
    ({ turnId } = await askServer('broken', (response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(chunk('a red'), () => setTimeout(() => response.socket?.destroy(), 50));
    }));
    ({ answer } = conversation.turn(turnId)!);
    assert.equal(answer.status, 'error');
    assert.equal(answer.text, 'a red');
    assert.match(
      answer.error ?? '',
      /^The engine server at \S+ closed the connection during the answer \([^)]+\): the server stopped, or a proxy or the network on the way cut it off\. Ask again\.$/,
    );
  });

  test("ficoco serve's errors keep their kind: a restarting engine is a crash, a loading model not loaded", async () => {
    const kinds: Record<string, string> = { engine_restarting: 'crashed', model_loading: 'not-loaded' };
    for (const [code, kind] of Object.entries(kinds)) {
      const unavailable: Respond = (response) => {
        response.writeHead(503, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: { message: 'not now', type: 'server_error', param: null, code } }));
      };
      await withServer('restarting', unavailable, async (url) => {
        await assert.rejects(
          new RemoteEngine({ baseUrl: url }).ask(SETTINGS.model, QUESTION, { text: () => undefined }),
          (error) =>
            error instanceof EngineError && error.kind === kind && /answered 503: not now\.$/.test(error.message),
        );
      });
    }
  });

  test('a redirect is refused: the question and its image go nowhere else', async () => {
    const elsewhere: string[] = [];
    const other = http.createServer((request, response) => {
      elsewhere.push(`${request.method} ${request.url}`);
      response.end();
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const target = `http://127.0.0.1:${(other.address() as AddressInfo).port}/v1/chat/completions`;
      await assertReplyFails(
        (response) => {
          response.writeHead(307, { location: target });
          response.end();
        },
        new RegExp(`redirected the request \\(307\\) to ${target}; FiCoCo does not follow redirects`),
      );
      assert.deepEqual(elsewhere, []);
    } finally {
      other.close();
    }
  });

  test('events that end in CR LF, sent a few bytes at a time, make the same answer', async () => {
    // The body is passed on in whole events (see the next test): an event's end split between two pieces still counts.
    const chunk = (delta: object, finish: string | null) =>
      `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 0, model: 'crlf', choices: [{ index: 0, delta, finish_reason: finish }] })}\r\n\r\n`;
    const body = chunk({ content: 'a red ' }, null) + chunk({ content: 'circle' }, 'stop') + 'data: [DONE]\r\n\r\n';
    const { turnId } = await askServer('crlf', async (response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let at = 0; at < body.length; at += 3) {
        response.write(body.slice(at, at + 3));
        await sleep(0);
      }
      response.end();
    });
    const { answer } = conversation.turn(turnId)!;
    assert.equal(answer.status, 'done');
    assert.equal(answer.text, 'a red circle');
  });

  test('a server that sends an event without end, or more than an answer holds, is cut off at once', async () => {
    // The client's decoders search an unfinished event again with every piece: 16 MiB of one line took over 5 s.
    const endless =
      (piece: Buffer, pieces: number): Respond =>
      async (response) => {
        response.writeHead(200, { 'content-type': 'text/event-stream' });
        for (let i = 0; i < pieces && !response.destroyed; i++)
          if (!response.write(piece)) await new Promise((resolve) => response.once('drain', resolve));
        response.end();
      };
    // CPU time, not wall time: a busy machine stretches the wait but not the work (both ends run in this process).
    let cpuMs = cpuMilliseconds();
    await assertReplyFails(endless(Buffer.alloc(2 ** 20, 'a'), 40), /sent more than 16 MiB without ending an event/);
    cpuMs = cpuMilliseconds() - cpuMs;
    assert.ok(cpuMs < 3000, `${cpuMs} ms of CPU`);
    // Comments (which every client passes over) in whole events, by the megabyte.
    cpuMs = cpuMilliseconds();
    const comments = Buffer.from(`:${'x'.repeat(2 ** 20 - 3)}\n\n`);
    await assertReplyFails(endless(comments, 100), /sent more than 70 MiB for one answer; FiCoCo stopped reading/);
    cpuMs = cpuMilliseconds() - cpuMs;
    assert.ok(cpuMs < 5000, `${cpuMs} ms of CPU`);
  });

  test('stats about other images than the question sent fail the reply', async () => {
    const flops = { vision: 1, projector: 1, llm: 1, total: 1 };
    const image = { rows: 128, cols: 128, patches: 'k'.repeat(128 * 128) };
    const stats = {
      promptTokens: 1,
      generatedTokens: 1,
      visualTokens: Array(64).fill({ original: 1, atDecoder: 1 }),
      imageSizes: [],
      steps: [],
      patchFates: Array(64).fill(image),
      preprocessMs: 0,
      visionMs: 0,
      prefillMs: 0,
      ttftMs: 0,
      decodeTokensPerSecond: 0,
      flops: { run: flops, unreduced: flops },
      provider: 'cpu',
    };
    await assertReplyFails(
      streaming('grids', [{ delta: { content: 'a circle' }, finish: 'stop', beside: { ficoco: { stats } } }]),
      /sent stats FiCoCo cannot read: ficoco\.stats\.visualTokens has 64 images; the question sent 1/,
    );
  });
});

/** Resolves once `condition()` holds, checked every 10 ms, or after `timeoutMs` (the test's assertions then say why). */
async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  for (const started = performance.now(); !condition() && performance.now() - started < timeoutMs;) await sleep(10);
}

/** This process's CPU time so far (user and system, every thread), in milliseconds. */
function cpuMilliseconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
