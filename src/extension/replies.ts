/**
 * The chat's replies: each question, and each "Compare with full tokens", is one reply streamed from the engine into
 * the conversation, saying how far the engine has read its image and prompt until the text comes. Stop cancels
 * between tokens (before the first, between tower passes and prompt chunks), and ends the engine process when a reply
 * does not stop within the grace period; a crash fails only the reply in flight; a reduced answer's speedup is
 * measured once the answer is done, never as part of it. Free of 'vscode' (vscode-jsonrpc's cancellation is the same
 * shape), so it is tested against a real engine process.
 */
import { randomInt } from 'node:crypto';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { parseBudget, readableBudget } from '../common/budget';
import { type AnswerStats, type LoadParams, MAX_SEED, loadKey, loadRequestKey } from '../protocol/engine';
import { type AnswerStatsView, type HostMessage, type ReplyKind, isReducedAnswer } from '../protocol/webview';
import type { Conversation, ImageInput } from './conversation';
import { type AnswerEngine, AskOptions, EngineError } from '../client/engineClient';
import type { StatusActivities, StatusLine } from './activity';
import { type ReductionSetting, reductionRequest } from './settings';
import type { SpeedupView } from '../protocol/webview';
import { type PrefillProgress, prefillProgressLabel, stoppingLabel } from '../common/prefillProgress';
import {
  DEFAULT_PAIR_PLAN,
  PrefillRun,
  SpeedupCache,
  SpeedupSubject,
  flopsRatio,
  measureSpeedup,
  prefillMs,
} from './speedup';

/** How long Stop waits for a reply to stop between tokens before it ends the engine process, at least. */
export const STOP_GRACE_MS = 3000;
/** Stop waits this many of the reply's longest runs so far (a 7B prompt chunk on a CPU takes seconds)… */
const STOP_GRACE_RUNS = 2;
/** …up to this long. */
const STOP_GRACE_MOST_MS = 60_000;
/** What a reply stopped while its model loads says until the load is done (a load cannot be cut short). */
export const STOPPING_AFTER_LOAD = 'Stopping once the model has loaded';
/** How long a stop waits for a model's load before it ends the engine process: a first 7B quantization takes minutes. */
const LOAD_STOP_GRACE_MS = 10 * 60_000;
/** A stop that waits at least this long for the run in flight says so, with the engine's estimate of the wait. */
export const STOP_NOTICE_FROM_MS = 2000;

/**
 * How long Stop waits for a reply before it ends the engine process: the engine stops once its run in flight is done
 * (a token, a tower pass, a prompt chunk), so a reply whose runs have taken long gets longer than `leastMs`.
 */
export function stopGraceMs(longestRunMs: number, leastMs = STOP_GRACE_MS): number {
  return Math.max(leastMs, Math.min(STOP_GRACE_MOST_MS, STOP_GRACE_RUNS * longestRunMs));
}

/**
 * The longest run of a reply so far: the waits between the engine's reports on it (the first, which may hold a model
 * load, not counted) and the engine's own estimates of the run it starts (a 7B model's first prompt chunk on a CPU,
 * which no earlier wait foretells).
 */
export class ReplyPace {
  private lastMs: number | undefined;
  /** when the run the engine last reported starting should end, by its estimate */
  private runEndsAt: number | undefined;
  longestMs = 0;

  report(nextRunMs = 0, now = performance.now()): void {
    if (this.lastMs !== undefined) this.longestMs = Math.max(this.longestMs, now - this.lastMs);
    this.longestMs = Math.max(this.longestMs, nextRunMs);
    this.lastMs = now;
    this.runEndsAt = nextRunMs > 0 ? now + nextRunMs : undefined;
  }

  /** Whether the engine has reported on the reply at all (it has started on it). */
  get reported(): boolean {
    return this.lastMs !== undefined;
  }

  /** How long the run in flight should still take, by the engine's estimate; undefined without one. */
  remainingMs(now = performance.now()): number | undefined {
    return this.runEndsAt === undefined ? undefined : Math.max(0, this.runEndsAt - now);
  }
}

/** What a reply is asked with, read from the settings when it starts (reading them may fail, as the reply's error). */
export interface ReplySettings {
  /** 'local', or the base URL of an OpenAI-compatible server that answers instead */
  engine: string;
  /** the model to ask on that server; '' for its only one */
  engineModel: string;
  model: LoadParams;
  /** undefined: every visual token */
  reduction: ReductionSetting | undefined;
  maxNewTokens: number;
  temperature: number;
  /** 1: the whole distribution */
  topP: number;
  /** 0: every token */
  topK: number;
  /** 0: no cut */
  minP: number;
  /** 1: off */
  repetitionPenalty: number;
  /** undefined: a new one for each sampled question */
  seed: number | undefined;
}

/** What the status bar says while a reply waits on the engine. */
export const REPLY_ACTIVITY = {
  loading: 'Loading model',
  answering: 'Answering',
  measuring: 'Measuring the speedup',
} as const;

/** Where the replies show besides the chat: the status bar. */
export interface ReplyStatus extends StatusLine {
  /** counts the changes of the settings the figures depend on: a reply notes it when asked, and shows it with them */
  readonly settingsGeneration: number;
  showAnswer(stats: AnswerStatsView, askedIn: number): void;
  /** an answer from a server that says nothing of reduction */
  showWithoutStats(server: string, askedIn: number): void;
}

export interface RepliesOptions {
  /** the engine process on this machine */
  engine: AnswerEngine;
  /** the engine behind an OpenAI-compatible base URL (ficoco.engine) that asks `model` ('' for the server's only one) */
  remote(baseUrl: string, model: string): Promise<AnswerEngine>;
  conversation: Conversation;
  speedups: SpeedupCache;
  /** tells every chat page about a change */
  post(message: HostMessage): void;
  /** the status bar, whose activities the replies share with a model download */
  status: StatusActivities<ReplyStatus>;
  log: { info(line: string): void; warn(line: string): void };
  /** a reply failed for a reason other than a cancel: the caller may offer a fix */
  onFailure(error: unknown): void;
  /** the engine runs on another provider than the one set, for this reason: called once per reason and session */
  onProviderFallback(reason: string): void;
  /** engine work starts and ends (the idle unloader counts it) */
  activity: { busy(): void; idle(): void };
  /** the least grace Stop gives a reply (default STOP_GRACE_MS) */
  stopGraceMs?: number;
  /** the least wait for a run in flight that a stopped reply explains (default STOP_NOTICE_FROM_MS) */
  stopNoticeFromMs?: number;
}

interface InFlight {
  cancel: CancellationTokenSource;
  /**
   * the engine answering it, which Stop ends when the reply does not stop in time; none while a remote one is set up
   * (its API key read from secret storage)
   */
  engine: AnswerEngine | undefined;
  settled: Promise<void>;
  settle(): void;
  pace: ReplyPace;
  /** the chat reply it streams into; none for a speedup measurement */
  reply?: ReplyKind;
  /** the engine loads the model for it first (a first quantization can take minutes) */
  loading: boolean;
}

export class Replies {
  /** replies and measurements in flight, by `turn/kind` */
  private readonly inFlight = new Map<string, InFlight>();
  /** the load an engine process answered last, so the status says "Answering" rather than "Loading model" */
  private loaded: { key: string; processId: number | undefined } | undefined;
  /** provider fallbacks already reported, so each is said once and not under every answer */
  private readonly fallbacksReported = new Set<string>();

  constructor(private readonly options: RepliesOptions) {}

  /**
   * Streams one reply of `turnId` into the conversation and finishes it (done, cancelled or failed); never rejects.
   * A reduced answer's speedup is measured after it, and the returned promise waits for that too.
   */
  async run(
    turnId: string,
    kind: ReplyKind,
    question: string,
    inputs: ImageInput[],
    settings: () => ReplySettings,
  ): Promise<void> {
    const { conversation, post, status, log } = this.options;
    const key = `${turnId}/${kind}`;
    // One reply of a kind per turn: a second Compare while the first runs would stream into the same reply.
    if (this.inFlight.has(key)) return;
    // A question comes before the background measurement of an earlier answer, which may need another model loaded.
    for (const [other, { cancel }] of this.inFlight) if (other.endsWith('/speedup')) cancel.cancel();
    const cancel = new CancellationTokenSource();
    this.options.activity.busy();
    const asked = performance.now();
    // Figures of settings changed while the reply runs are shown as the previous settings', not as current.
    const askedIn = status.line.settingsGeneration;
    let measure: (() => Promise<void>) | undefined;
    // Tracked before its engine is set up, so that a Stop while a remote one reads its API key is not lost.
    const flight = this.track(key, cancel, undefined, { reply: kind, loading: false });
    // Once stopped, the status never says the reply answers again: its engine set up, or its text read, after Stop.
    const showActivity = (label: string) => {
      if (!cancel.token.isCancellationRequested) status.busy(key, label);
    };
    try {
      const {
        engine: where,
        engineModel,
        model,
        reduction,
        maxNewTokens,
        temperature,
        topP,
        topK,
        minP,
        repetitionPenalty,
        seed,
      } = settings();
      const engine = where === 'local' ? this.options.engine : await this.options.remote(where, engineModel);
      const alreadyLoaded =
        where !== 'local' || (this.loaded?.key === loadRequestKey(model) && this.loaded.processId === engine.processId);
      flight.engine = engine;
      flight.loading = !alreadyLoaded;
      showActivity(alreadyLoaded ? REPLY_ACTIVITY.answering : REPLY_ACTIVITY.loading);
      const request: AskOptions = {
        question,
        images: inputs.map(({ name, dataBase64 }) => ({ name, dataBase64 })),
        history: conversation.history(turnId),
        ...(reduction ? { reduction: reductionRequest(reduction) } : {}),
        maxNewTokens,
        temperature,
        topP,
        // Drawn for each sampled question, as ficoco serve does, so asking again may answer differently; greedy, 0
        // as before (it changes nothing).
        seed: seed ?? (temperature > 0 ? randomInt(MAX_SEED + 1) : 0),
        // Off, they are not sent, as before: another server may refuse one (an older vLLM refuses top_k 0).
        ...(topK !== 0 ? { topK } : {}),
        ...(minP !== 0 ? { minP } : {}),
        ...(repetitionPenalty !== 1 ? { repetitionPenalty } : {}),
      };
      // Only a sampled answer depends on its seed: shown with it, set as ficoco.seed it gives the answer again.
      const sampledSeed = temperature > 0 ? request.seed : undefined;
      const onProgress = (progress: PrefillProgress) => {
        this.paced(key, progress.nextRunMs);
        // Once stopped, the reply keeps saying so: the run that ends after Stop still reports its progress.
        if (cancel.token.isCancellationRequested) return;
        const label = prefillProgressLabel(progress);
        status.busy(key, label);
        this.post(conversation.progress(turnId, kind, label));
      };
      const onText = (text: string) => {
        this.paced(key);
        showActivity(REPLY_ACTIVITY.answering);
        const message = conversation.appendText(turnId, kind, text);
        if (message) post(message);
      };
      // Asked again on a fresh process (the one it waited in ended): the model loads first, which Stop waits for.
      const onReloading = () => {
        const flight = this.inFlight.get(key);
        if (flight) flight.loading = true;
        status.busy(key, REPLY_ACTIVITY.loading);
      };
      const result = await engine.ask(
        model,
        request,
        { text: onText, progress: onProgress, reloading: onReloading },
        cancel.token,
      );
      const how =
        where !== 'local' ? `from ${where}` : alreadyLoaded ? 'model already loaded' : 'including the model load';
      log.info(
        `${kind === 'full' ? 'full-token answer' : 'answer'} in ${(performance.now() - asked).toFixed(0)} ms ` +
          `(${how}), ${result.stats?.generatedTokens ?? 'unknown'} tokens, stop: ${result.stopReason}` +
          (sampledSeed === undefined ? '' : `, seed ${sampledSeed}`),
      );
      // A new reduction is warmed up by a load of its own (seconds to minutes on a large model), which Stop waits for.
      if (where === 'local') this.loaded = { key: loadRequestKey(model), processId: engine.processId };
      const { stats } = result;
      if (!stats) {
        // A server other than ficoco serve, or a stopped remote answer (stats come with the finish): no figures.
        this.post(conversation.finish(turnId, kind, result.stopReason));
        if (kind === 'answer' && result.stopReason !== 'cancelled') {
          status.showFigures(key, (line) => line.showWithoutStats(where, askedIn));
        }
      } else {
        const fallback = stats.providerFallback;
        if (fallback && !this.fallbacksReported.has(fallback)) {
          this.fallbacksReported.add(fallback);
          this.options.onProviderFallback(fallback);
        }
        const view = statsView(stats, sampledSeed);
        // Stopped as it finished, it is not measured either: the measurement is minutes of work on a large model.
        const measuring =
          kind === 'answer' &&
          isReducedAnswer(view) &&
          result.stopReason !== 'cancelled' &&
          !cancel.token.isCancellationRequested;
        this.post(
          conversation.finish(turnId, kind, result.stopReason, measuring ? { ...view, measuringSpeedup: true } : view),
        );
        if (kind === 'answer') {
          status.showFigures(key, (line) => line.showAnswer(view, askedIn));
          if (measuring) measure = () => this.measure(turnId, engine, where, model, request, stats, view, askedIn);
        }
      }
    } catch (error) {
      this.failed(turnId, kind, error);
    } finally {
      this.untrack(key, cancel);
    }
    if (measure) await measure();
    this.options.activity.idle();
    // Another reply, measurement or download still running (a question asked meanwhile) keeps the status busy with it.
    status.end(key, `${turnId}/speedup`);
  }

  /**
   * Cancels the replies of `turnId`, once (another page or the command may ask again); one still running after the
   * grace period ends with the engine process.
   */
  stop(turnId: string): void {
    const { conversation } = this.options;
    for (const [key, { cancel, settled, engine, pace, reply, loading }] of this.inFlight) {
      if (!key.startsWith(`${turnId}/`) || (reply && cancel.token.isCancellationRequested)) continue;
      cancel.cancel();
      if (reply) this.post(conversation.stopping(turnId, reply));
      // Its engine not set up yet: once it is, the cancelled question sends nothing, so no run to wait for or end.
      if (!engine) continue;
      // Not started yet, behind another reply on the same engine (it answers one question at a time): it ends as
      // cancelled when its turn comes, and ending the process would end the other reply.
      if (!pace.reported && this.queuedBehindAnotherReply(key, engine)) continue;
      // Behind the model's load, which a stop cannot cut short: the load is given its time (a first quantization takes
      // minutes), and a load that never ends still ends with the process.
      const waitsForLoad = !pace.reported && loading;
      if (reply && waitsForLoad) this.post(conversation.progress(turnId, reply, STOPPING_AFTER_LOAD));
      // A 7B model's prompt chunk on a CPU runs for tens of seconds: the reply says what it waits for.
      const remainingMs = pace.remainingMs();
      const notice = this.options.stopNoticeFromMs ?? STOP_NOTICE_FROM_MS;
      if (reply && !waitsForLoad && remainingMs !== undefined && remainingMs >= notice) {
        const label = stoppingLabel(remainingMs);
        this.post(conversation.progress(turnId, reply, label));
        this.options.status.busy(key, label);
      }
      // Cancellation acts between tokens, tower passes and prompt chunks; a run past the grace period ends the process.
      // Not started, it waits for the run in flight on its engine (a cancelled measurement's) to end first.
      const longestMs = pace.reported ? pace.longestMs : this.longestRunOn(engine, pace.longestMs);
      const graceMs = waitsForLoad ? LOAD_STOP_GRACE_MS : stopGraceMs(longestMs, this.options.stopGraceMs);
      const timer = setTimeout(() => {
        if (!this.inFlight.has(key)) return;
        this.options.log.warn(`The answer did not stop within ${graceMs} ms; restarting the engine process.`);
        engine.stop();
      }, graceMs);
      void settled.finally(() => clearTimeout(timer));
    }
  }

  /**
   * Whether an earlier chat reply in flight (the map keeps the order they started in) uses the same engine; not a
   * speedup measurement, which a question cancels as it starts, so one that hangs still ends with the process.
   */
  private queuedBehindAnotherReply(key: string, engine: AnswerEngine): boolean {
    for (const [other, flight] of this.inFlight) {
      if (other === key) return false;
      if (flight.engine === engine && flight.reply) return true;
    }
    return false;
  }

  /** The longest run so far of anything in flight on `engine`, at least `leastMs`. */
  private longestRunOn(engine: AnswerEngine, leastMs: number): number {
    let longest = leastMs;
    for (const flight of this.inFlight.values())
      if (flight.engine === engine) longest = Math.max(longest, flight.pace.longestMs, flight.pace.remainingMs() ?? 0);
    return longest;
  }

  /** Stops the newest chat reply in flight, else a measurement (the command FiCoCo: Stop Answering). */
  stopLatest(): void {
    // Those a page has stopped already are passed over, so the command moves on to the next one still running.
    const running = [...this.inFlight].reverse().filter(([, { cancel }]) => !cancel.token.isCancellationRequested);
    const [latest] = running.find(([, { reply }]) => reply !== undefined) ?? running[0] ?? [];
    if (latest) this.stop(latest.split('/')[0]);
  }

  cancelAll(): void {
    for (const { cancel } of this.inFlight.values()) cancel.cancel();
  }

  /**
   * The measured speedup of a reduced answer (speedup.ts), or the one kept from an earlier answer with the same
   * model, provider, image cost (visual tokens, vision FLOPs) and reduction; shown once known, with the settings
   * generation the answer was asked in. A failure is logged, never shown as the answer's.
   */
  private async measure(
    turnId: string,
    engine: AnswerEngine,
    where: string,
    model: LoadParams,
    request: AskOptions,
    stats: AnswerStats,
    view: AnswerStatsView,
    askedIn: number,
  ): Promise<void> {
    const { speedups, status, log, conversation } = this.options;
    const key = `${turnId}/speedup`;
    const subject: SpeedupSubject = {
      engine: where === 'local' ? loadKey(model) : where,
      provider: stats.provider,
      images: {
        visualTokens: stats.visualTokens.map((image) => image.original),
        visionFlops: stats.flops.unreduced.vision,
      },
      reduction: stats.reduction!,
    };
    const show = (speedup: SpeedupView) => {
      this.post(conversation.setSpeedup(turnId, speedup));
      status.showFigures(key, (line) => line.showAnswer({ ...view, speedup }, askedIn));
    };
    const known = speedups.get(subject);
    if (known) {
      show(known);
      return;
    }
    let measured = false;
    const cancel = new CancellationTokenSource();
    this.track(key, cancel, engine, { loading: false });
    status.busy(key, REPLY_ACTIVITY.measuring);
    const prefillOnly = { question: request.question, images: request.images, maxNewTokens: 1, temperature: 0 };
    const processId = engine.processId;
    const run: PrefillRun = async (reduced) => {
      const result = await engine.ask(
        model,
        { ...prefillOnly, topP: 1, seed: 0, ...(reduced && request.reduction ? { reduction: request.reduction } : {}) },
        { text: () => undefined, progress: (progress) => this.paced(key, progress.nextRunMs) },
        cancel.token,
      );
      // A run answered by a process started since (after a crash) is cold: the pairs would not compare like with like.
      if (engine.processId !== processId)
        throw new EngineError(
          'The FiCoCo engine process stopped unexpectedly during the measurement and was started again; runs in ' +
            'a fresh process are not comparable with the ones before.',
          'crashed',
        );
      const cancelled = result.stopReason === 'cancelled' || cancel.token.isCancellationRequested;
      return cancelled || !result.stats ? undefined : prefillMs(result.stats);
    };
    try {
      const speedup = await measureSpeedup(
        run,
        `prefill (vision + language model) on ${stats.provider}`,
        DEFAULT_PAIR_PLAN,
        (done, pairs) => status.busy(key, `${REPLY_ACTIVITY.measuring}: ${done} of ${pairs} pairs`),
      );
      if (speedup === undefined) return;
      log.info(
        `speedup ${speedup.ratio.toFixed(2)}× (middle half ${speedup.low.toFixed(2)}–${speedup.high.toFixed(2)}×, ` +
          `${speedup.pairs} pairs, ${speedup.verdict}) for ${speedups.key(subject)}`,
      );
      await speedups.set(subject, speedup);
      show(speedup);
      measured = true;
    } catch (error) {
      if (error instanceof EngineError && error.kind === 'cancelled') return;
      log.warn(
        `The speedup of this answer could not be measured: ${error instanceof Error ? error.message : String(error)}`,
      );
    } finally {
      // Cancelled or failed: the answer no longer says a figure is coming.
      if (!measured) this.post(conversation.setSpeedup(turnId, undefined));
      this.untrack(key, cancel);
    }
  }

  private failed(turnId: string, kind: ReplyKind, error: unknown): void {
    const { conversation } = this.options;
    if (error instanceof EngineError && error.kind === 'cancelled') {
      this.post(conversation.finish(turnId, kind, 'cancelled'));
      return;
    }
    const crashed = error instanceof EngineError && error.kind === 'crashed';
    const message = error instanceof Error ? error.message : String(error);
    this.post(
      conversation.fail(
        turnId,
        kind,
        crashed ? `${message} The conversation is kept; ask again to continue.` : message,
      ),
    );
    this.options.onFailure(error);
  }

  private track(
    key: string,
    cancel: CancellationTokenSource,
    engine: AnswerEngine | undefined,
    { reply, loading }: { reply?: ReplyKind; loading: boolean },
  ): InFlight {
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    const flight: InFlight = { cancel, engine, settled, settle, pace: new ReplyPace(), reply, loading };
    this.inFlight.set(key, flight);
    return flight;
  }

  /** The engine reported on `key` (progress, with its estimate of the run it starts, or text). */
  private paced(key: string, nextRunMs?: number): void {
    const flight = this.inFlight.get(key);
    if (!flight) return;
    flight.loading = false;
    flight.pace.report(nextRunMs);
  }

  private untrack(key: string, cancel: CancellationTokenSource): void {
    this.inFlight.get(key)?.settle();
    this.inFlight.delete(key);
    cancel.dispose();
  }

  private post(message: HostMessage | undefined): void {
    if (message) this.options.post(message);
  }
}

/** What the chat shows of an answer's stats, with the seed of a sampled answer. */
export function statsView(stats: AnswerStats, sampledSeed?: number): AnswerStatsView {
  const view: AnswerStatsView = {
    visualTokens: stats.visualTokens.map(({ original, atDecoder }) => ({ original, atDecoder })),
    visionMs: stats.visionMs,
    prefillMs: stats.prefillMs,
    ttftMs: stats.ttftMs,
    generatedTokens: stats.generatedTokens,
    decodeTokensPerSecond: stats.decodeTokensPerSecond,
    provider: stats.provider,
    flopsRatio: flopsRatio(stats),
  };
  if (stats.providerFallback !== undefined) view.providerFallback = stats.providerFallback;
  if (stats.historyTrimmed !== undefined) view.historyTrimmed = { ...stats.historyTrimmed };
  if (sampledSeed !== undefined) view.seed = sampledSeed;
  if (stats.reduction) {
    const { method, budget, rule, why } = stats.reduction;
    // The engine's label is exact ("33.33333333333333%"), for requests and keys; a person reads it to 3 digits.
    const parsed = parseBudget(budget);
    view.reduction = { method, budget: parsed ? readableBudget(parsed) : budget, rule, why };
  }
  if (stats.patchFates)
    view.imageReductions = stats.patchFates.map(({ rows, cols, patches, tileBorders, thumbnail, seen }) => ({
      rows,
      cols,
      patches,
      ...(tileBorders ? { tileBorders: { rows: [...tileBorders.rows], cols: [...tileBorders.cols] } } : {}),
      ...(thumbnail ? { thumbnail: { ...thumbnail } } : {}),
      ...(seen ? { seen: { ...seen } } : {}),
    }));
  return view;
}
