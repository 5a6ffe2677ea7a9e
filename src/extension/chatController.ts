/**
 * What the chat does: takes images in, asks the engine, streams answers into the conversation, measures the
 * speedup, and keeps the engine process in line — Stop cancels between tokens and kills the process if it
 * does not stop within a grace period; a crash fails only the answer in flight; an idle engine is unloaded.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { BUILTIN_MODEL_PATH } from '../hub/presets';
import { FicocoError } from '../common/errors';
import { IMAGE_FILE_EXTENSIONS, MAX_IMAGE_BYTES, checkImageFile, formatMebibytes } from '../common/imageFile';
import { AnswerStats, LoadParams, loadKey } from '../protocol/engine';
import type { AnswerStatsView, HostMessage, ReplyKind, Turn, WebviewMessage } from '../protocol/webview';
import { Conversation, ImageInput } from './conversation';
import { ChatSurface, ChatViews } from './chatViews';
import { AskOptions, EngineClient, EngineError } from './engineClient';
import { FicocoSettings, ReductionSetting, expandModelPath, quantizationFor, readSettings } from './settings';
import { Baselines, PrefillRun, baselineKey, flopsRatio, measureSpeedup, prefillMs } from './speedup';
import { SpeedupStatusBar } from './statusBar';

/** How long Stop waits for the engine to stop between tokens before it ends the process. */
export const STOP_GRACE_MS = 3000;
const MODEL_FILES = 'config.json, *.safetensors, tokenizer.json, tokenizer_config.json and preprocessor_config.json';

/** A failure the user can fix, with the setting that fixes it. */
export class SettingsError extends Error {
  constructor(
    message: string,
    readonly setting: string,
  ) {
    super(message);
  }
}

export class ChatController implements vscode.Disposable {
  private readonly conversation = new Conversation();
  private readonly baselines: Baselines;
  /** answers in flight, by turn and reply */
  private readonly running = new Map<string, { cancel: vscode.CancellationTokenSource; settled: Promise<unknown>; resolveSettled: () => void }>();
  private readonly reportedProblems = new Set<string>();
  private idleTimer: NodeJS.Timeout | undefined;
  private active = 0;
  private loadedKey: string | undefined;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly engine: EngineClient,
    private readonly views: ChatViews,
    private readonly statusBar: SpeedupStatusBar,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.baselines = new Baselines(context.globalState);
    context.subscriptions.push(
      vscode.workspace.onDidChangeConfiguration((event) => {
        // A changed setting may be wrong in a new way: say so again.
        if (event.affectsConfiguration('ficoco')) this.reportedProblems.clear();
      }),
    );
  }

  handle(message: WebviewMessage, from: ChatSurface): void {
    switch (message.type) {
      case 'ready':
        from.post(this.conversation.state());
        return;
      case 'ask':
        void this.ask(message.question);
        return;
      case 'stop':
        this.stop(message.turnId);
        return;
      case 'compare':
        void this.compare(message.turnId);
        return;
      case 'newChat':
        this.newChat();
        return;
      case 'attach':
        void this.attachFromDialog();
        return;
      case 'addImages':
        this.addImages(message.images.map((image) => ({ name: image.name, bytes: Buffer.from(image.dataBase64, 'base64') })));
        return;
      case 'addUris':
        void this.addUris(message.uris.flatMap((uri) => this.parseUri(uri)));
        return;
      case 'removeImage':
        this.views.broadcast(this.conversation.removePending(message.id));
        return;
      case 'copy':
        void vscode.env.clipboard.writeText(message.text);
        return;
      case 'insert':
        void this.insertAtCursor(message.text);
        return;
    }
  }

  /** Adds image files (Explorer, image preview, file dialog) to the next question and shows the chat. */
  async addFiles(uris: readonly vscode.Uri[]): Promise<void> {
    await this.views.reveal();
    await this.addUris(uris);
  }

  async attachFromDialog(): Promise<void> {
    const picked = await vscode.window.showOpenDialog({ title: 'Attach images to the FiCoCo question', openLabel: 'Attach', canSelectMany: true, filters: { Images: [...IMAGE_FILE_EXTENSIONS] } });
    if (picked) await this.addUris(picked);
  }

  newChat(): void {
    for (const { cancel } of this.running.values()) cancel.cancel();
    this.views.broadcast(this.conversation.clear());
  }

  /** Stops the newest answer in flight (the Stop command and Escape outside the chat). */
  stopLatest(): void {
    const latest = [...this.running.keys()].at(-1);
    if (latest) this.stop(latest.split('/')[0]);
  }

  stop(turnId: string): void {
    const entries = [...this.running.entries()].filter(([key]) => key.startsWith(`${turnId}/`));
    for (const [key, { cancel, settled }] of entries) {
      cancel.cancel();
      // Cancellation acts between tokens; a prefill that runs on past the grace period ends with the process.
      const timer = setTimeout(() => {
        if (!this.running.has(key)) return;
        this.log.warn(`The answer did not stop within ${STOP_GRACE_MS} ms; restarting the engine process.`);
        this.loadedKey = undefined;
        this.engine.stop();
      }, STOP_GRACE_MS);
      void settled.finally(() => clearTimeout(timer));
    }
  }

  /** Asks about the waiting images; resolves with the turn once its answer (and speedup) are in. */
  async ask(question: string): Promise<Turn | undefined> {
    const started = this.conversation.startTurn(question);
    if (!started) {
      this.notice('Paste, drop or attach an image first, then ask about it.');
      return undefined;
    }
    for (const message of started.messages) this.views.broadcast(message);
    const { turn, inputs } = started;
    const settings = this.settings();
    await this.answer(turn.id, 'answer', question, inputs, settings, settings?.reduction);
    return this.conversation.turn(turn.id);
  }

  /** Asks a finished turn's question again with every visual token, shown beside the reduced answer. */
  async compare(turnId: string): Promise<void> {
    const asked = this.conversation.turnInputs(turnId);
    const opened = this.conversation.startFull(turnId);
    if (!asked || !opened) return;
    this.views.broadcast(opened);
    await this.answer(turnId, 'full', asked.question, asked.inputs, this.settings(), undefined);
  }

  dispose(): void {
    clearTimeout(this.idleTimer);
    for (const { cancel } of this.running.values()) cancel.dispose();
  }

  private async answer(turnId: string, kind: ReplyKind, question: string, inputs: ImageInput[], settings: FicocoSettings | undefined, reduction: ReductionSetting | undefined): Promise<void> {
    const key = `${turnId}/${kind}`;
    const cancel = this.track(key);
    this.engineBusy(true);
    const asked = performance.now();
    let measure: (() => Promise<void>) | undefined;
    try {
      if (!settings) throw new Error('FiCoCo settings could not be read.');
      const model = this.modelParams(settings);
      const modelKey = loadKey(model);
      const alreadyLoaded = this.loadedKey === modelKey;
      this.statusBar.busy(alreadyLoaded ? 'Answering' : 'Loading model');
      const request: AskOptions = {
        question,
        images: inputs.map((input) => ({ name: input.name, dataBase64: Buffer.from(input.bytes).toString('base64') })),
        history: this.conversation.history(turnId),
        ...(reduction ? { reduction: { method: reduction.method, budget: reduction.budget, params: reduction.params } } : {}),
        maxNewTokens: settings.maxNewTokens,
        temperature: settings.temperature,
        topP: 1,
        seed: 0,
      };
      const result = await this.engine.ask(
        model,
        request,
        (text) => {
          this.statusBar.busy('Answering');
          this.post(this.conversation.appendText(turnId, kind, text));
        },
        cancel.token,
      );
      this.log.info(`${kind === 'full' ? 'full-token answer' : 'answer'} in ${(performance.now() - asked).toFixed(0)} ms (${alreadyLoaded ? 'model already loaded' : 'including the model load'}), ${result.stats.generatedTokens} tokens, stop: ${result.stopReason}`);
      this.loadedKey = modelKey;
      const stats = statsView(result.stats, reduction);
      this.post(this.conversation.finish(turnId, kind, result.stopReason, stats));
      if (kind === 'answer') {
        this.statusBar.showAnswer(stats);
        if (reduction && result.stopReason !== 'cancelled') measure = () => this.measureSpeedup(turnId, model, request, result.stats, stats);
      }
    } catch (error) {
      this.failed(turnId, kind, error);
    } finally {
      this.untrack(key, cancel);
    }
    // The answer is done either way: measuring its speedup can fail or be stopped without touching it.
    if (measure) await measure();
    this.engineBusy(false);
    this.statusBar.idle();
  }

  /** An answer or measurement in flight under `key` (turn/kind): Stop and New Chat cancel it. */
  private track(key: string): vscode.CancellationTokenSource {
    const cancel = new vscode.CancellationTokenSource();
    let resolveSettled: () => void = () => undefined;
    this.running.set(key, { cancel, settled: new Promise<void>((resolve) => (resolveSettled = resolve)), resolveSettled });
    return cancel;
  }

  private untrack(key: string, cancel: vscode.CancellationTokenSource): void {
    this.running.get(key)?.resolveSettled();
    this.running.delete(key);
    cancel.dispose();
  }

  /** The measured speedup of a reduced answer (src/extension/speedup.ts), shown once known; a failure is logged, never shown as the answer's. */
  private async measureSpeedup(turnId: string, model: LoadParams, request: AskOptions, stats: AnswerStats, view: AnswerStatsView): Promise<void> {
    const key = `${turnId}/speedup`;
    const cancel = this.track(key);
    const baseline = baselineKey(model.modelDir, stats.provider, stats.imageSizes);
    const prefillOnly = { question: request.question, images: request.images, maxNewTokens: 1, temperature: 0, topP: 1, seed: 0 };
    const run: PrefillRun = async (reduced) => {
      if (!this.baselines.get(baseline)) this.statusBar.busy('Measuring the unreduced baseline');
      const result = await this.engine.ask(model, { ...prefillOnly, ...(reduced && request.reduction ? { reduction: request.reduction } : {}) }, () => undefined, cancel.token);
      return result.stopReason === 'cancelled' || cancel.token.isCancellationRequested ? undefined : result.stats;
    };
    try {
      const speedup = await measureSpeedup(run, this.baselines, baseline, prefillMs(stats));
      if (speedup === undefined) return;
      this.log.info(`speedup ${speedup.toFixed(2)}× against the unreduced prefill baseline ${this.baselines.get(baseline)?.toFixed(1)} ms for ${baseline}`);
      this.post(this.conversation.setSpeedup(turnId, speedup));
      this.statusBar.showAnswer({ ...view, speedup });
    } catch (error) {
      if (error instanceof EngineError && error.kind === 'cancelled') return;
      if (error instanceof EngineError && error.kind === 'crashed') this.loadedKey = undefined;
      this.log.warn(`The speedup of this answer could not be measured: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      this.untrack(key, cancel);
    }
  }

  private failed(turnId: string, kind: ReplyKind, error: unknown): void {
    if (error instanceof EngineError && error.kind === 'cancelled') {
      this.post(this.conversation.finish(turnId, kind, 'cancelled'));
      return;
    }
    if (error instanceof EngineError && error.kind === 'crashed') this.loadedKey = undefined;
    const message =
      error instanceof EngineError && error.kind === 'crashed'
        ? `${error.message} The conversation is kept; ask again to continue.`
        : error instanceof Error
          ? error.message
          : String(error);
    this.post(this.conversation.fail(turnId, kind, message));
    void this.offerFix(error);
  }

  /** A notification with the button that fixes the failure, when there is one. */
  private async offerFix(error: unknown): Promise<void> {
    let action: { title: string; run: () => Thenable<unknown> } | undefined;
    if (error instanceof SettingsError) action = openSettings(error.setting);
    else if (error instanceof EngineError) {
      if (error.kind === 'model-folder' || error.kind === 'config' || error.kind === 'weights') action = openSettings('ficoco.modelPath');
      else if (error.kind === 'provider') action = openSettings('ficoco.provider');
      else if (error.kind === 'input' && /reduction|method|budget/i.test(error.message)) action = openSettings('ficoco.reduction');
      else if (error.kind === 'crashed' || error.kind === 'internal') action = { title: 'Show Engine Log', run: async () => this.log.show() };
    } else {
      this.log.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    }
    if (!action) return;
    const chosen = await vscode.window.showErrorMessage(`FiCoCo: ${error instanceof Error ? error.message : String(error)}`, action.title);
    if (chosen) await action.run();
  }

  private settings(): FicocoSettings | undefined {
    const configuration = vscode.workspace.getConfiguration();
    const { settings, problems } = readSettings((key) => configuration.get(key));
    for (const problem of problems) {
      if (this.reportedProblems.has(problem)) continue;
      this.reportedProblems.add(problem);
      this.log.warn(problem);
      const setting = problem.split(/[ :]/)[0];
      void vscode.window.showWarningMessage(`FiCoCo: ${problem}`, 'Open Settings').then((chosen) => {
        if (chosen) void vscode.commands.executeCommand('workbench.action.openSettings', setting);
      });
    }
    return settings;
  }

  /** The model folder the settings name (the built-in one when empty) and the provider. */
  private modelParams(settings: FicocoSettings): LoadParams {
    let modelDir: string;
    if (settings.modelPath === '') {
      modelDir = vscode.Uri.joinPath(this.context.extensionUri, ...BUILTIN_MODEL_PATH).fsPath;
    } else {
      const configured = settings.modelPath;
      modelDir = expandModelPath(configured);
      if (!path.isAbsolute(modelDir)) {
        throw new SettingsError(`ficoco.modelPath is "${configured}"; set it to the absolute path of a model folder (${MODEL_FILES}).`, 'ficoco.modelPath');
      }
    }
    const quantization = quantizationFor(settings, modelDir);
    // Quantized weights of a model in the Hugging Face cache go to the extension's storage, not into the cache.
    const quantizedCacheDir = vscode.Uri.joinPath(this.context.globalStorageUri, 'quantized').fsPath;
    return {
      modelDir,
      provider: settings.provider,
      ...(settings.threads > 0 ? { threads: settings.threads } : {}),
      ...(quantization !== 'none' ? { quantization, quantizedCacheDir } : {}),
    };
  }

  /** Takes images whose header passes the size limits (src/common/imageFile.ts); a notice names each one refused. */
  private addImages(images: ImageInput[]): void {
    const accepted = images.filter((image) => {
      try {
        checkImageFile(image.bytes, image.name);
        return true;
      } catch (error) {
        if (!(error instanceof FicocoError)) throw error;
        this.notice(error.message);
        return false;
      }
    });
    if (accepted.length === 0) return;
    try {
      this.views.broadcast(this.conversation.addPending(accepted));
    } catch (error) {
      this.notice(error instanceof Error ? error.message : String(error));
    }
  }

  /** Reads through workspace.fs, so files of remote workspaces work too. */
  private async addUris(uris: readonly vscode.Uri[]): Promise<void> {
    const images: ImageInput[] = [];
    for (const uri of uris) {
      const name = path.posix.basename(uri.path);
      const extension = name.slice(name.lastIndexOf('.') + 1).toLowerCase();
      if (!(IMAGE_FILE_EXTENSIONS as readonly string[]).includes(extension)) {
        this.notice(`${name} is not an image FiCoCo can read: use PNG, JPEG, WebP or GIF.`);
        continue;
      }
      try {
        const { size } = await vscode.workspace.fs.stat(uri);
        if (size > MAX_IMAGE_BYTES) {
          this.notice(`${name} is ${formatMebibytes(size)} MiB; FiCoCo takes image files up to ${formatMebibytes(MAX_IMAGE_BYTES)} MiB.`);
          continue;
        }
        images.push({ name, bytes: await vscode.workspace.fs.readFile(uri) });
      } catch (error) {
        this.notice(`Could not read ${name}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    if (images.length > 0) this.addImages(images);
  }

  /** A dropped URI, or none (with a notice) when VS Code cannot parse it. */
  private parseUri(uri: string): vscode.Uri[] {
    try {
      return [vscode.Uri.parse(uri, true)];
    } catch (error) {
      this.notice(`${uri} is not a file address FiCoCo can open (${error instanceof Error ? error.message : String(error)}).`);
      return [];
    }
  }

  private async insertAtCursor(text: string): Promise<void> {
    const editor = vscode.window.activeTextEditor ?? vscode.window.visibleTextEditors[0];
    if (!editor) {
      this.notice('Open a text editor to insert the code into.');
      return;
    }
    await editor.edit((edit) => {
      for (const selection of editor.selections) edit.replace(selection, text);
    });
  }

  /** Tracks engine use: the idle timer runs only while nothing is in flight. */
  private engineBusy(busy: boolean): void {
    this.active += busy ? 1 : -1;
    clearTimeout(this.idleTimer);
    if (this.active > 0) return;
    const minutes = this.settings()?.unloadAfterMinutes ?? 0;
    if (minutes <= 0) return;
    this.idleTimer = setTimeout(() => {
      if (this.active > 0 || this.engine.processId === undefined) return;
      this.log.info(`unloading the engine after ${minutes} idle minute(s)`);
      this.loadedKey = undefined;
      this.engine.stop();
    }, minutes * 60_000);
  }

  private notice(message: string): void {
    this.views.broadcast({ type: 'notice', message });
  }

  private post(message: HostMessage | undefined): void {
    if (message) this.views.broadcast(message);
  }
}

/** What the chat shows of an answer's stats. */
export function statsView(stats: AnswerStats, reduction: ReductionSetting | undefined): AnswerStatsView {
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
  if (reduction) view.reduction = { method: reduction.method, budget: reduction.budgetLabel };
  if (stats.patchFates) view.imageReductions = stats.patchFates.map(({ rows, cols, patches }) => ({ rows, cols, patches }));
  return view;
}

function openSettings(setting: string): { title: string; run: () => Thenable<unknown> } {
  return { title: 'Open Settings', run: () => vscode.commands.executeCommand('workbench.action.openSettings', setting) };
}
