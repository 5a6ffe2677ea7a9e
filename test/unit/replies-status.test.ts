/**
 * What the status bar says while replies overlap, on a scripted engine: one reply, measurement or comparison ending
 * must not put the last answer's figures up while another is still loading or answering.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CancellationToken } from 'vscode-jsonrpc/node';
import type { AnswerEngine, AnswerListeners, AskOptions, EngineAnswer } from '../../src/client/engineClient';
import { Conversation, type ImageInput } from '../../src/extension/conversation';
import { Replies, type ReplySettings } from '../../src/extension/replies';
import { SpeedupCache } from '../../src/extension/speedup';
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

describe('the status bar while replies overlap', () => {
  test('a measurement cancelled by a new question leaves the status busy with that question', async () => {
    const engine = new ScriptedEngine();
    const conversation = new Conversation();
    const statuses: string[] = [];
    const values = new Map<string, unknown>();
    const replies = new Replies({
      engine,
      remote: () => Promise.reject(new Error('no remote')),
      conversation,
      speedups: new SpeedupCache(
        { get: <T>(key: string) => values.get(key) as T | undefined, update: async (k, v) => void values.set(k, v) },
        'test',
      ),
      post: () => undefined,
      status: {
        busy: (label) => statuses.push(`busy: ${label}`),
        showAnswer: () => statuses.push('answer'),
        showWithoutStats: () => statuses.push('no stats'),
        idle: () => statuses.push('idle'),
      },
      log: { info: () => undefined, warn: () => undefined },
      onFailure: () => undefined,
      onProviderFallback: () => undefined,
      activity: { busy: () => undefined, idle: () => undefined },
    });
    const reduced: ReplySettings = {
      engine: 'local',
      model: { modelDir: '/models/a', provider: 'cpu' },
      reduction: { method: 'ficoco-v', budget: { tokens: 12 }, budgetLabel: '12', params: {} },
      maxNewTokens: 4,
      temperature: 0,
    };
    const turn = (question: string) => {
      conversation.addPending([IMAGE]);
      return conversation.startTurn(question)!.turn.id;
    };

    const first = replies.run(turn('first?'), 'answer', 'first?', [IMAGE], () => reduced);
    await settle();
    engine.asks[0]!.answer({ text: 'a', stopReason: 'stop-token', stats: stats(true) });
    await settle();
    assert.equal(engine.asks.length, 2, 'the speedup measurement runs');
    assert.match(statuses.at(-1)!, /^busy: Measuring the speedup/);

    // A question about another model: the measurement is cancelled; the new one loads for a while.
    const other = { ...reduced, model: { ...reduced.model, modelDir: '/models/b' } };
    const second = replies.run(turn('second?'), 'answer', 'second?', [IMAGE], () => other);
    await first;
    await settle();
    assert.equal(statuses.at(-1), 'busy: Loading model', `still loading: ${statuses.join(' | ')}`);

    engine.asks.at(-1)!.answer({ text: 'b', stopReason: 'stop-token', stats: stats(false) });
    await second;
    assert.equal(statuses.at(-1), 'idle', 'idle once nothing is in flight');
  });
});
