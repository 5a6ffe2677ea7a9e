/**
 * What the status bar says while replies (or a reply and a model download) overlap, on a scripted engine: one reply,
 * measurement, comparison or download ending must not put the last answer's figures up while another still runs.
 * And what a reply asks the engine with: the sampling settings.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CancellationToken } from 'vscode-jsonrpc/node';
import type { AnswerEngine, AnswerListeners, AskOptions, EngineAnswer } from '../../src/client/engineClient';
import { StatusActivities } from '../../src/extension/activity';
import { Conversation, type ImageInput } from '../../src/extension/conversation';
import { Replies, type ReplySettings, statsView } from '../../src/extension/replies';
import { SpeedupCache } from '../../src/extension/speedup';
import { StatusFigures } from '../../src/extension/statusFigures';
import type { AnswerStats, LoadParams } from '../../src/protocol/engine';

const IMAGE: ImageInput = { name: 'a.png', dataBase64: 'iVBORw==', format: 'png' };
const FLOPS = { vision: 10, projector: 0, llm: 10, total: 20 };

function stats(reduced: boolean): AnswerStats {
  return {
    ...(reduced
      ? { reduction: { method: 'ficoco-v', budget: '12', params: {}, rule: 'setting', why: 'your setting' } }
      : {}),
    promptTokens: 20,
    generatedTokens: 1,
    visualTokens: [{ original: 144, atDecoder: reduced ? 12 : 144 }],
    imageSizes: [{ width: 8, height: 8 }],
    steps: [],
    preprocessMs: 1,
    visionMs: 1,
    prefillMs: 1,
    ttftMs: 2,
    decodeTokensPerSecond: 100,
    flops: { run: reduced ? { ...FLOPS, total: 10 } : FLOPS, unreduced: FLOPS },
    provider: 'cpu',
  };
}

/** An engine whose asks wait until the test answers them; a cancelled ask ends as cancelled at once. */
class ScriptedEngine implements AnswerEngine {
  readonly asks: { question: AskOptions; answer: (result: EngineAnswer) => void; listeners: AnswerListeners }[] = [];
  readonly processId = 1;

  ask(_model: LoadParams, question: AskOptions, listeners: AnswerListeners, token?: CancellationToken) {
    return new Promise<EngineAnswer>((resolve) => {
      this.asks.push({ question, answer: resolve, listeners });
      token?.onCancellationRequested(() =>
        setImmediate(() => resolve({ text: '', stopReason: 'cancelled', stats: stats(false) })),
      );
    });
  }

  stop(): void {}
  dispose(): void {}
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

const REDUCED: ReplySettings = {
  engine: 'local',
  engineModel: '',
  model: { modelDir: '/models/a', provider: 'cpu' },
  reduction: { method: 'ficoco-v', budget: { tokens: 12 }, budgetLabel: '12', params: {} },
  maxNewTokens: 4,
  temperature: 0,
  topP: 1,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1,
  seed: undefined,
};

/**
 * Replies on a scripted engine, with what the status bar was told, in order, its activities to share, and the figures
 * it shows when idle.
 */
function scriptedReplies() {
  const engine = new ScriptedEngine();
  const conversation = new Conversation();
  const statuses: string[] = [];
  const logged: string[] = [];
  const values = new Map<string, unknown>();
  const figures = new StatusFigures();
  const status = new StatusActivities({
    busy: (label: string) => statuses.push(`busy: ${label}`),
    get settingsGeneration() {
      return figures.settingsGeneration;
    },
    showAnswer: (...shown: Parameters<StatusFigures['showAnswer']>) => {
      statuses.push('answer');
      figures.showAnswer(...shown);
    },
    showWithoutStats: (...shown: Parameters<StatusFigures['showWithoutStats']>) => {
      statuses.push('no stats');
      figures.showWithoutStats(...shown);
    },
    idle: () => statuses.push('idle'),
    settingsChanged: () => figures.settingsChanged(),
  });
  const replies = new Replies({
    engine,
    remote: () => Promise.reject(new Error('no remote')),
    conversation,
    speedups: new SpeedupCache(
      { get: <T>(key: string) => values.get(key) as T | undefined, update: async (k, v) => void values.set(k, v) },
      'test',
    ),
    post: () => undefined,
    status,
    log: { info: (line) => void logged.push(line), warn: () => undefined },
    onFailure: () => undefined,
    onProviderFallback: () => undefined,
    activity: { busy: () => undefined, idle: () => undefined },
  });
  /** Asks `question` about the image in a new turn. */
  const ask = (question: string, settings: ReplySettings) => {
    conversation.addPending([IMAGE]);
    const turnId = conversation.startTurn(question)!.turn.id;
    return replies.run(turnId, 'answer', question, [IMAGE], () => settings);
  };
  return { engine, statuses, status, figures, ask, conversation, logged };
}

describe('the status bar while replies overlap', () => {
  test('a measurement cancelled by a new question leaves the status busy with that question', async () => {
    const { engine, statuses, ask } = scriptedReplies();
    const first = ask('first?', REDUCED);
    await settle();
    engine.asks[0]!.answer({ text: 'a', stopReason: 'stop-token', stats: stats(true) });
    await settle();
    assert.equal(engine.asks.length, 2, 'the speedup measurement runs');
    assert.match(statuses.at(-1)!, /^busy: Measuring the speedup/);

    // A question about another model: the measurement is cancelled; the new one loads for a while.
    const second = ask('second?', { ...REDUCED, model: { ...REDUCED.model, modelDir: '/models/b' } });
    await first;
    await settle();
    assert.equal(statuses.at(-1), 'busy: Loading model', `still loading: ${statuses.join(' | ')}`);

    engine.asks.at(-1)!.answer({ text: 'b', stopReason: 'stop-token', stats: stats(false) });
    await second;
    assert.equal(statuses.at(-1), 'idle', 'idle once nothing is in flight');
  });

  test("a model download ending while an answer runs leaves the answer's activity, and the reverse", async () => {
    const { engine, statuses, status, ask } = scriptedReplies();
    const unreduced = { ...REDUCED, reduction: undefined };
    const first = ask('first?', unreduced);
    await settle();
    status.busy('download', 'Downloading 99 %');
    status.end('download');
    assert.equal(statuses.at(-1), 'busy: Loading model', `the answer still loads: ${statuses.join(' | ')}`);
    engine.asks[0]!.answer({ text: 'a', stopReason: 'stop-token', stats: stats(false) });
    await first;
    assert.deepEqual(statuses.slice(-2), ['answer', 'idle']);

    // A download still running when an answer ends: its progress comes back over the answer's figures.
    status.busy('download', 'Downloading 10 %');
    const second = ask('second?', unreduced);
    await settle();
    engine.asks[1]!.answer({ text: 'b', stopReason: 'stop-token', stats: stats(false) });
    await second;
    assert.equal(statuses.at(-1), 'busy: Downloading 10 %', `the download goes on: ${statuses.join(' | ')}`);
    status.end('download');
    assert.equal(statuses.at(-1), 'idle');
  });
});

/** Answers the speedup measurement's prefill runs (asks from `first` on), each as its side would, until `reply` ends. */
async function answerMeasurement(engine: ScriptedEngine, first: number, reply: Promise<void>): Promise<void> {
  let ended = false;
  void reply.then(() => (ended = true));
  for (let next = first; !ended; await settle())
    for (; next < engine.asks.length; next++) {
      const run = engine.asks[next]!;
      run.answer({ text: '', stopReason: 'max-tokens', stats: stats(run.question.reduction !== undefined) });
    }
}

describe("the status bar's figures of an answer asked before a settings change", () => {
  test("its figures, and the speedup measured after it, are the previous settings', never current", async () => {
    const { engine, status, figures, ask } = scriptedReplies();
    const first = ask('first?', REDUCED);
    await settle();
    // The reduction changes while the answer runs (extension.ts: a setting in FIGURES_DEPEND_ON).
    status.changeFigures((line) => line.settingsChanged());
    engine.asks[0]!.answer({ text: 'a', stopReason: 'stop-token', stats: stats(true) });
    await settle();
    assert.equal(figures.view().text, '$(zap) FiCoCo', 'no figure on the bar for the previous settings');
    assert.match(figures.view().tooltip, /with the previous settings:[^]*ficoco-v, budget 12[^]*measuring/);

    await answerMeasurement(engine, 1, first);
    assert.equal(figures.view().text, '$(zap) FiCoCo', 'its speedup is not shown as current either');
    assert.match(figures.view().tooltip, /with the previous settings:[^]*paired warm runs/);

    // The next question is asked with the settings now in force: its figures (its speedup the one kept) are current.
    const second = ask('second?', REDUCED);
    await settle();
    engine.asks.at(-1)!.answer({ text: 'b', stopReason: 'stop-token', stats: stats(true) });
    await second;
    assert.equal(figures.view().text, '$(zap) ≈1×');
    assert.match(figures.view().tooltip, /^\*\*FiCoCo\*\* — last answer\n/);
  });
});

describe('the sampling a reply asks the engine for', () => {
  /** The question's sampling fields, those it has. */
  const samplingOf = (question: AskOptions) =>
    Object.fromEntries(
      ['temperature', 'topP', 'topK', 'minP', 'repetitionPenalty', 'seed'].flatMap((field) =>
        field in question ? [[field, question[field as keyof AskOptions]]] : [],
      ),
    );

  test('the sampling settings reach the question as the temperature does; those left off are not sent', async () => {
    const { engine, ask } = scriptedReplies();
    const unreduced = { ...REDUCED, reduction: undefined };
    const sampling = { temperature: 0.7, topP: 0.9, topK: 40, minP: 0.05, repetitionPenalty: 1.1, seed: 5 };
    for (const settings of [{ ...unreduced, ...sampling }, unreduced]) {
      const reply = ask('what is it?', settings);
      await settle();
      engine.asks.at(-1)!.answer({ text: 'a', stopReason: 'stop-token', stats: stats(false) });
      await reply;
    }
    assert.deepEqual(samplingOf(engine.asks[0]!.question), sampling);
    // Off, as before these settings: a server other than ficoco serve never sees fields it may not know; greedy, the
    // seed changes nothing and stays 0.
    assert.deepEqual(samplingOf(engine.asks[1]!.question), { temperature: 0, topP: 1, seed: 0 });
  });

  test('a sampled question asked again draws a new seed; ficoco.seed gives every question that seed', async () => {
    const { engine, ask } = scriptedReplies();
    const sampled = { ...REDUCED, reduction: undefined, temperature: 0.7 };
    /** The seeds two askings of the same question are sent with. */
    const seedsOfTwoAsks = async (settings: ReplySettings) => {
      for (let asking = 0; asking < 2; asking++) {
        const reply = ask('what is it?', settings);
        await settle();
        engine.asks.at(-1)!.answer({ text: 'a', stopReason: 'stop-token', stats: stats(false) });
        await reply;
      }
      return engine.asks.slice(-2).map(({ question }) => question.seed);
    };
    const [first, second] = await seedsOfTwoAsks({ ...sampled, seed: undefined });
    for (const seed of [first, second]) assert.ok(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff, `${seed}`);
    // Two equal draws of 2^32 would fail this once in four billion runs.
    assert.notEqual(first, second, 'the same question gets another answer');
    assert.deepEqual(await seedsOfTwoAsks({ ...sampled, seed: 7 }), [7, 7]);
  });

  test("a sampled answer's figures and log line carry the seed it was asked with; a greedy answer's none", async () => {
    const { engine, ask, conversation, logged } = scriptedReplies();
    const unreduced = { ...REDUCED, reduction: undefined };
    for (const settings of [{ ...unreduced, temperature: 0.7 }, unreduced]) {
      const reply = ask('what is it?', settings);
      await settle();
      engine.asks.at(-1)!.answer({ text: 'a', stopReason: 'stop-token', stats: stats(false) });
      await reply;
    }
    const [sampled, greedy] = conversation.records().map(({ turn }) => turn.answer.stats);
    const drawn = engine.asks[0]!.question.seed;
    // Set as ficoco.seed, it gives the same answer again.
    assert.equal(sampled?.seed, drawn);
    assert.match(logged[0]!, new RegExp(`^answer in \\d+ ms .*, stop: stop-token, seed ${drawn}$`));
    assert.ok(greedy && !('seed' in greedy), 'a greedy answer is the same whatever the seed');
    assert.doesNotMatch(logged[1]!, /seed/);
  });
});

describe('the budget the chat and the status bar show', () => {
  test("the engine's exact label of a share reads to 3 significant digits; a count and 'all' as they are", () => {
    const shown = (budget: string) => {
      const answer = stats(true);
      return statsView({ ...answer, reduction: { ...answer.reduction!, budget } }).reduction?.budget;
    };
    assert.equal(shown('33.33333333333333%'), '33.3%');
    assert.equal(shown('11%'), '11%');
    assert.equal(shown('16'), '16');
    assert.equal(shown('all'), 'all');
  });
});
