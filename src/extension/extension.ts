/**
 * VS Code glue. activate() only registers things: the engine process is forked on the first question,
 * and nothing here touches ONNX Runtime or the model files.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { BUILTIN_MODEL_PATH } from '../engine/builtinModel';
import { LoadParams, MAX_IMAGE_BYTES, PROVIDER_SETTINGS, ProviderSetting } from '../protocol/engine';
import { AnswerPanel } from './answerPanel';
import { EngineClient, EngineError } from './engineClient';
import { turnImage } from './transcript';

const IMAGE_EXTENSIONS = ['png', 'jpg', 'jpeg', 'webp', 'gif'];
/** Generation settings until they become settings of their own: greedy, answers of up to 256 tokens. */
const GENERATION = { maxNewTokens: 256, temperature: 0, topP: 1, seed: 0 };
const MODEL_FILES = 'config.json, *.safetensors, tokenizer.json, tokenizer_config.json and preprocessor_config.json';

/** A failure the user can fix, with the button that takes them there. */
class UserFacingError extends Error {
  constructor(
    message: string,
    readonly action?: { title: string; run: () => Thenable<unknown> },
  ) {
    super(message);
  }
}

export function activate(context: vscode.ExtensionContext): void {
  const engineLog = vscode.window.createOutputChannel('FiCoCo Engine', { log: true });
  const engine = new EngineClient({
    hostModule: vscode.Uri.joinPath(context.extensionUri, 'dist', 'host.js').fsPath,
    log: (line) => engineLog.info(line),
  });
  const panel = new AnswerPanel(context.extensionUri, engineLog);
  const session: AskSession = { context, engine, panel, engineLog };
  context.subscriptions.push(
    engineLog,
    panel,
    { dispose: () => engine.dispose() },
    // From the Explorer the first argument is the clicked file; from the palette there is none.
    vscode.commands.registerCommand('ficoco.askAboutImage', (target?: unknown) => askAboutImage(session, target instanceof vscode.Uri ? target : undefined)),
  );
}

interface AskSession {
  context: vscode.ExtensionContext;
  engine: EngineClient;
  panel: AnswerPanel;
  engineLog: vscode.LogOutputChannel;
}

async function askAboutImage(session: AskSession, target: vscode.Uri | undefined): Promise<void> {
  try {
    const image = target ?? (await pickImage());
    if (!image) return;
    const name = path.posix.basename(image.path);
    const question = await vscode.window.showInputBox({
      title: `Ask FiCoCo about ${name}`,
      prompt: 'What do you want to know about the image?',
      placeHolder: 'e.g. What does the error dialog say?',
      ignoreFocusOut: true,
      validateInput: (text) => (text.trim() === '' ? 'Type a question about the image.' : undefined),
    });
    if (!question) return;
    const model = await modelSettings(session.context);
    const bytes = await readImage(image, name);
    await answer(session, model, name, bytes, question.trim());
  } catch (error) {
    await report(session, error);
  }
}

/** Streams the answer into a new turn of the FiCoCo panel; failures end that turn with their message. */
async function answer(session: AskSession, model: LoadParams, name: string, bytes: Uint8Array, question: string): Promise<void> {
  const turn = session.panel.startTurn(question, [turnImage(name, bytes)]);
  try {
    const images = [{ name, dataBase64: Buffer.from(bytes).toString('base64') }];
    const result = await session.engine.ask(model, { question, images, ...GENERATION }, (text) => turn.appendText(text), turn.token);
    turn.finish(result.stopReason, result.stats);
  } catch (error) {
    // Stopped before the first token: the engine had nothing to measure yet.
    if (error instanceof EngineError && error.kind === 'cancelled') {
      turn.finish('cancelled');
      return;
    }
    turn.fail(error instanceof Error ? error.message : String(error));
    await report(session, error, { inline: true });
  }
}

async function pickImage(): Promise<vscode.Uri | undefined> {
  const picked = await vscode.window.showOpenDialog({
    title: 'Ask FiCoCo about an image',
    openLabel: 'Ask About Image',
    canSelectMany: false,
    filters: { Images: IMAGE_EXTENSIONS },
  });
  return picked?.[0];
}

/** Reads through workspace.fs so files of remote workspaces work too. */
async function readImage(image: vscode.Uri, name: string): Promise<Uint8Array> {
  const { size } = await vscode.workspace.fs.stat(image);
  if (size > MAX_IMAGE_BYTES) {
    throw new UserFacingError(`${name} is ${mebibytes(size)} MiB; FiCoCo takes images up to ${mebibytes(MAX_IMAGE_BYTES)} MiB. Use a smaller image.`);
  }
  return vscode.workspace.fs.readFile(image);
}

/** The model folder and provider the settings ask for; the bundled model when no folder is set. */
async function modelSettings(context: vscode.ExtensionContext): Promise<LoadParams> {
  const settings = vscode.workspace.getConfiguration('ficoco');
  const provider = settings.get<string>('provider', 'auto');
  if (!(PROVIDER_SETTINGS as readonly string[]).includes(provider)) {
    throw new UserFacingError(`ficoco.provider is "${provider}"; choose one of ${PROVIDER_SETTINGS.join(', ')}.`, openSettings('ficoco.provider'));
  }
  const configured = settings.get<string>('modelPath', '').trim();
  if (configured !== '') {
    const modelDir = configured === '~' || configured.startsWith('~/') ? path.join(os.homedir(), configured.slice(1)) : configured;
    if (!path.isAbsolute(modelDir)) {
      throw new UserFacingError(`ficoco.modelPath is "${configured}"; set it to the absolute path of a model folder.`, openSettings('ficoco.modelPath'));
    }
    return { modelDir, provider: provider as ProviderSetting };
  }
  const bundled = vscode.Uri.joinPath(context.extensionUri, ...BUILTIN_MODEL_PATH);
  if (!(await exists(vscode.Uri.joinPath(bundled, 'config.json')))) {
    throw new UserFacingError(
      `No model is set up yet. Set ficoco.modelPath to a LLaVA model folder (a Hugging Face download with ${MODEL_FILES}).`,
      openSettings('ficoco.modelPath'),
    );
  }
  return { modelDir: bundled.fsPath, provider: provider as ProviderSetting };
}

/**
 * Shows a failure as a notification, with the button that fixes it when there is one. When the panel already
 * shows the message (`inline`), the notification only appears to offer that button.
 */
async function report(session: AskSession, error: unknown, { inline = false } = {}): Promise<void> {
  const message = error instanceof Error ? error.message : String(error);
  let action: UserFacingError['action'];
  if (error instanceof UserFacingError) action = error.action;
  else if (error instanceof EngineError) {
    if (error.kind === 'cancelled') return;
    if (error.kind === 'model-folder' || error.kind === 'config' || error.kind === 'weights') action = openSettings('ficoco.modelPath');
    else if (error.kind === 'provider') action = openSettings('ficoco.provider');
    else if (error.kind === 'crashed' || error.kind === 'internal') action = { title: 'Show Engine Log', run: async () => session.engineLog.show() };
  } else {
    session.engineLog.error(error instanceof Error ? (error.stack ?? message) : message);
  }
  if (inline && !action) return;
  const chosen = await vscode.window.showErrorMessage(`FiCoCo: ${message}`, ...(action ? [action.title] : []));
  if (chosen && action) await action.run();
}

function openSettings(setting: string): UserFacingError['action'] {
  return { title: 'Open Settings', run: () => vscode.commands.executeCommand('workbench.action.openSettings', setting) };
}

async function exists(uri: vscode.Uri): Promise<boolean> {
  try {
    await vscode.workspace.fs.stat(uri);
    return true;
  } catch {
    return false;
  }
}

function mebibytes(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1).replace(/\.0$/, '');
}
