/**
 * The chat's VS Code side: routes the pages' messages, takes images in (paste, drop, Attach, Explorer), reads the
 * settings, and turns failures into a notification with the button that fixes them. The replies themselves
 * (replies.ts), idle unloading (idleUnload.ts) and the choice of fix (errorFixes.ts) are plain modules.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { IMAGE_FILE_EXTENSIONS } from '../common/imageFile';
import { privateTo } from '../common/loopback';
import { BUILTIN_MODEL_PATH } from '../hub/presets';
import type { ImageAttachment } from '../protocol/engine';
import type { HostMessage, Turn, WebviewMessage } from '../protocol/webview';
import { ChatSurface, ChatViews } from './chatViews';
import { Conversation } from './conversation';
import { ConversationStore } from './conversationStore';
import { type AnswerEngine, EngineClient, EngineError } from '../client/engineClient';
import { RemoteEngine } from '../client/remoteEngine';
import { RemoteClients } from './remoteClients';
import { promptForSecret } from './secrets';
import { ANSWERING_CONTEXT, StatusActivities, countedActivity } from './activity';
import { type ErrorFix, fallbackFixes, fixFor } from './errorFixes';
import { INSTALL_CUDA_COMMAND, cudaProviderMissing } from './gpuSetup';
import { IdleUnloader } from './idleUnload';
import { type ImageFileSystem, readImageFiles } from './imageFiles';
import { Replies, ReplySettings } from './replies';
import {
  type ExtensionFolders,
  FicocoSettings,
  loadParamsOf,
  modelDirOf,
  quantizationSettingFor,
  readSettings,
} from './settings';
import { SpeedupCache } from './speedup';
import type { SpeedupStatusBar } from './statusBar';

/** Where the API key of a remote engine (ficoco.engine) is kept. */
const ENGINE_API_KEY_SECRET = 'ficoco.engineApiKey';

/** workspace.fs as image reading needs it. */
const workspaceImageFiles: ImageFileSystem<vscode.Uri> = {
  stat: async (uri) => {
    const { size, type } = await vscode.workspace.fs.stat(uri);
    return { size, isFile: (type & vscode.FileType.File) !== 0 };
  },
  readFile: (uri) => vscode.workspace.fs.readFile(uri),
};

export class ChatController implements vscode.Disposable {
  private readonly conversation = new Conversation();
  /** the conversation on disk, so that a window reload finds it where it was */
  private readonly store: ConversationStore;
  /** the saved conversation taken back: every message and command waits for it */
  private readonly restored: Promise<void>;
  /** nothing is saved before then: a save of the still empty conversation would delete the saved one */
  private isRestored = false;
  private readonly replies: Replies;
  private readonly unloader: IdleUnloader;
  /** the remote engine's client, by its address, key and model */
  private readonly remotes = new RemoteClients();
  /** images being taken in, in the order they came; a question waits for those before it (see ask) */
  private intake: Promise<void>;
  /** setting problems already shown (each once, until the settings change) */
  private readonly reportedProblems = new Set<string>();
  /** the last save, once the chat is closed */
  private closed: Promise<void> | undefined;

  constructor(
    private readonly context: vscode.ExtensionContext,
    engine: EngineClient,
    private readonly views: ChatViews,
    status: StatusActivities<SpeedupStatusBar>,
    private readonly log: vscode.LogOutputChannel,
  ) {
    // The workspace's own storage; a window without a folder has none, and uses the global one (shared by all such
    // windows: each save keeps the turns the others saved).
    const storage = context.storageUri ?? context.globalStorageUri;
    this.store = new ConversationStore(
      vscode.Uri.joinPath(storage, 'chat').fsPath,
      () => this.conversation.records(),
      log,
    );
    this.restored = this.store
      .load()
      .then((records) => {
        this.conversation.restore(records);
        if (records.length > 0) log.info(`restored ${records.length} turn(s) of the chat from ${this.store.folder}`);
      })
      .catch((error: unknown) => {
        log.error(`the saved chat was not restored: ${error instanceof Error ? error.message : String(error)}`);
      })
      .finally(() => {
        this.isRestored = true;
      });
    this.intake = this.restored;
    this.unloader = new IdleUnloader({
      minutes: () => this.settings()?.unloadAfterMinutes ?? 0,
      loaded: () => engine.processId !== undefined,
      unload: (idleMs) => {
        log.info(`unloading the engine after ${Math.round(idleMs / 60_000)} idle minute(s)`);
        engine.stop();
      },
    });
    this.replies = new Replies({
      engine,
      remote: (baseUrl, model) => this.remoteEngine(baseUrl, model),
      conversation: this.conversation,
      speedups: new SpeedupCache(context.globalState, String(context.extension.packageJSON.version)),
      post: (message) => this.publish(message),
      status,
      log,
      onFailure: (error) => void this.offerFix(error),
      onProviderFallback: (reason) => void this.reportFallback(reason),
      // "FiCoCo: Stop Answering" shows in the Command Palette only while there is something to stop.
      activity: countedActivity(this.unloader, (busy) => {
        void vscode.commands.executeCommand('setContext', ANSWERING_CONTEXT, busy);
      }),
    });
    context.subscriptions.push(
      // In the order they came, once the saved conversation is back.
      views.onDidReceiveMessage(({ message, from }) => void this.restored.then(() => this.handle(message, from))),
      vscode.workspace.onDidChangeConfiguration((event) => {
        // A changed setting may be wrong in a new way: say so again.
        if (event.affectsConfiguration('ficoco')) this.reportedProblems.clear();
        // An engine idle already counts its idle time against the new setting, not from the next answer.
        if (event.affectsConfiguration('ficoco.unloadAfterMinutes')) this.unloader.minutesChanged();
      }),
    );
  }

  /** Says that the chosen provider could not be used, and why (Replies calls it once; each answer's details say it too). */
  private async reportFallback(reason: string): Promise<void> {
    this.log.warn(`provider fallback: ${reason}`);
    const fixes = fallbackFixes({ cudaProviderMissing: cudaProviderMissing(this.context) });
    const chosen = await vscode.window.showInformationMessage(`FiCoCo: ${reason}`, ...fixes.map((fix) => fix.title));
    const fix = fixes.find((offered) => offered.title === chosen);
    if (fix) await this.apply(fix);
  }

  handle(message: WebviewMessage, from: ChatSurface): void {
    switch (message.type) {
      case 'ready':
        from.post(this.conversation.state());
        return;
      case 'ask':
        void this.ask(message.question, from);
        return;
      case 'stop':
        this.replies.stop(message.turnId);
        return;
      case 'compare':
        void this.compare(message.turnId);
        return;
      case 'newChat':
        void this.newChat();
        return;
      case 'attach':
        void this.attachFromDialog();
        return;
      case 'addImages':
        void this.takeIn(async () => this.addImages(message.images, message.refused));
        return;
      case 'addUris':
        void this.takeIn(() => this.addUris(message.uris));
        return;
      case 'removeImage':
        this.publish(this.conversation.removePending(message.id));
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
    await this.takeIn(() => this.addUris(uris));
  }

  async attachFromDialog(): Promise<void> {
    const picked = await vscode.window.showOpenDialog({
      title: 'Attach images to the FiCoCo question',
      openLabel: 'Attach',
      canSelectMany: true,
      filters: { Images: [...IMAGE_FILE_EXTENSIONS] },
    });
    if (picked) await this.takeIn(() => this.addUris(picked));
  }

  /** Empties the conversation, and deletes the saved one with its images. */
  async newChat(): Promise<void> {
    await this.restored;
    this.replies.cancelAll();
    this.publish(this.conversation.clear());
  }

  /** Stops the newest answer in flight (the command FiCoCo: Stop Answering). */
  stopLatest(): void {
    this.replies.stopLatest();
  }

  /**
   * Asks about the waiting images once those added before the question are taken or refused; a question the
   * conversation holds back goes back to the page that asked, with why. Resolves with the turn once its answer (and
   * speedup) are in.
   */
  async ask(question: string, from?: ChatSurface): Promise<Turn | undefined> {
    await this.intake;
    const started = this.conversation.ask(question);
    if ('held' in started) {
      if (from) from.post(started.held);
      else this.notice(started.held.message);
      return undefined;
    }
    for (const message of started.messages) this.publish(message);
    const { turn, inputs } = started;
    await this.replies.run(turn.id, 'answer', question, inputs, () => this.replySettings(true));
    return this.conversation.turn(turn.id);
  }

  /** Asks a finished turn's question again with every visual token, shown beside the reduced answer. */
  async compare(turnId: string): Promise<void> {
    // One comparison at a time: a second click while it runs would empty the reply it streams into.
    const running = this.conversation.turn(turnId)?.full?.status;
    if (running === 'waiting' || running === 'streaming') return;
    // A turn restored without all its images cannot be asked again.
    const asked = this.conversation.turnInputs(turnId);
    const opened = asked && this.conversation.startFull(turnId);
    if (!asked || !opened) return;
    this.publish(opened);
    await this.replies.run(turnId, 'full', asked.question, asked.inputs, () => this.replySettings(false));
  }

  dispose(): void {
    void this.close();
  }

  /**
   * Stops the answers and saves the chat as it stands; resolves once it is on disk (deactivate waits for it, as a
   * reload ends the extension host). Once only: deactivate and dispose both call it.
   */
  close(): Promise<void> {
    this.closed ??= this.stopAndSave();
    return this.closed;
  }

  private stopAndSave(): Promise<void> {
    this.unloader.dispose();
    this.replies.cancelAll();
    this.remotes.dispose();
    // An answer still streaming is saved as far as it got (the store saves only after a change, and publish makes
    // none before the restore).
    return this.store.flush();
  }

  /** Tells every chat page about a change, and saves a change to the turns: at once, or soon for streamed text. */
  private publish(message: HostMessage): void {
    this.views.broadcast(message);
    if (!this.isRestored) return;
    if (message.type === 'replyText') this.store.changed(false, message.turnId);
    else if (message.type === 'turnAdded' || message.type === 'turnUpdated') this.store.changed(true, message.turn.id);
    else if (message.type === 'state') this.store.changed(true);
  }

  /** FiCoCo: Set Engine API Key — the Bearer key of the server ficoco.engine names. */
  setEngineApiKey(): Promise<void> {
    return promptForSecret(this.context.secrets, {
      key: ENGINE_API_KEY_SECRET,
      title: 'FiCoCo: engine API key',
      purpose: 'The key of the server in ficoco.engine (ficoco serve --api-key); sent only to that server.',
      placeHolder: 'sk-…',
      stored: 'the engine API key is stored; questions to ficoco.engine send it.',
      removed: 'the engine API key was removed.',
    });
  }

  /**
   * The engine behind `baseUrl` asking `model`, with the API key stored now (a new key, address or model gets a new
   * client; questions still running on the one before finish there).
   */
  private async remoteEngine(baseUrl: string, model: string): Promise<AnswerEngine> {
    const apiKey = await this.context.secrets.get(ENGINE_API_KEY_SECRET);
    const { engine, created } = this.remotes.client(
      JSON.stringify([baseUrl, apiKey ?? null, model]),
      () => new RemoteEngine({ baseUrl, model, ...(apiKey ? { apiKey } : {}) }),
    );
    if (created && apiKey && !privateTo(baseUrl)) {
      // Said with each new client: the key and every screenshot go to it as they are, readable on the way.
      const warning =
        `the engine API key, your questions and screenshots go to ${baseUrl} over plain http, readable on the ` +
        'network on the way; where it is not trusted, put the server behind https (docs/serving.md).';
      this.log.warn(warning);
      void vscode.window.showWarningMessage(`FiCoCo: ${warning}`);
    }
    return engine;
  }

  /** What a reply asks with, from the settings now; `reduced` false answers with every visual token. */
  private replySettings(reduced: boolean): ReplySettings {
    const settings = this.settings();
    if (!settings) throw new Error('FiCoCo settings could not be read.');
    return {
      engine: settings.engine,
      engineModel: settings.engineModel,
      model: loadParamsOf(settings, this.folders()),
      reduction: reduced ? settings.reduction : undefined,
      maxNewTokens: settings.maxNewTokens,
      temperature: settings.temperature,
      topP: settings.topP,
      topK: settings.topK,
      minP: settings.minP,
      repetitionPenalty: settings.repetitionPenalty,
      seed: settings.seed,
    };
  }

  private folders(): ExtensionFolders {
    return {
      builtinModel: vscode.Uri.joinPath(this.context.extensionUri, ...BUILTIN_MODEL_PATH).fsPath,
      // Quantized weights of a model in the Hugging Face cache go to the extension's storage, not into the cache.
      quantizedCache: vscode.Uri.joinPath(this.context.globalStorageUri, 'quantized').fsPath,
    };
  }

  /** A notification with the button that fixes the failure, when there is one (errorFixes.ts). */
  private async offerFix(error: unknown): Promise<void> {
    const settings = this.settings();
    const fix = fixFor(error, settings && quantizationSettingFor(settings, modelDirOf(settings, this.folders())));
    if (!fix) {
      // The engine's own failures are in the chat; anything else is a bug worth its stack in the log.
      if (!(error instanceof EngineError))
        this.log.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
      return;
    }
    const chosen = await vscode.window.showErrorMessage(
      `FiCoCo: ${error instanceof Error ? error.message : String(error)}`,
      fix.title,
    );
    if (chosen) await this.apply(fix);
  }

  /** Does what a notification's button offered. */
  private async apply(fix: ErrorFix): Promise<void> {
    if (fix.title === 'Show Engine Log') this.log.show();
    else if (fix.title === 'Set Engine API Key') await this.setEngineApiKey();
    else if (fix.title === 'Install CUDA Provider…') await vscode.commands.executeCommand(INSTALL_CUDA_COMMAND);
    else await vscode.commands.executeCommand('workbench.action.openSettings', fix.setting);
  }

  /** The settings now; each value replaced by its default is reported once, with the setting to open. */
  private settings(): FicocoSettings | undefined {
    const configuration = vscode.workspace.getConfiguration();
    const { settings, problems } = readSettings((key) => configuration.get(key));
    for (const { setting, message } of problems) {
      if (this.reportedProblems.has(message)) continue;
      this.reportedProblems.add(message);
      this.log.warn(message);
      void vscode.window.showWarningMessage(`FiCoCo: ${message}`, 'Open Settings').then((chosen) => {
        if (chosen) void vscode.commands.executeCommand('workbench.action.openSettings', setting);
      });
    }
    return settings;
  }

  /** Runs a step of taking images in after the steps before it; a step that fails (a bug) refuses its images. */
  private takeIn(step: () => Promise<void>): Promise<void> {
    this.intake = this.intake.then(step).catch((error: unknown) => {
      this.log.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
      this.refuse(`The images could not be taken: ${error instanceof Error ? error.message : String(error)}`);
    });
    return this.intake;
  }

  private addImages(images: readonly ImageAttachment[], refused: readonly string[] = []): void {
    for (const message of this.conversation.addImages(images, refused)) this.publish(message);
  }

  /** Reads through workspace.fs, so files of remote workspaces work too; a dropped URI comes as its text. */
  private async addUris(uris: readonly (vscode.Uri | string)[]): Promise<void> {
    const files: { uri: vscode.Uri; name: string }[] = [];
    const unparsed: string[] = [];
    for (const entry of uris) {
      try {
        const uri = typeof entry === 'string' ? vscode.Uri.parse(entry, true) : entry;
        files.push({ uri, name: path.posix.basename(uri.path) });
      } catch (error) {
        unparsed.push(
          `${String(entry)} is not a file address FiCoCo can open (${error instanceof Error ? error.message : String(error)}).`,
        );
      }
    }
    const { images, refused } = await readImageFiles(files, workspaceImageFiles, {
      room: this.conversation.imageRoom(),
    });
    this.addImages(images, [...unparsed, ...refused]);
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

  private notice(message: string): void {
    this.publish({ type: 'notice', message });
  }

  /** A notice about an image not taken, which holds the next question back (Conversation.ask). */
  private refuse(reason: string): void {
    this.publish(this.conversation.refuse(reason));
  }
}
