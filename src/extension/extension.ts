/**
 * VS Code glue. activate() only registers things: the engine process is forked on the first question,
 * and nothing here touches ONNX Runtime or the model files.
 */
import * as vscode from 'vscode';
import type { Turn } from '../protocol/webview';
import { METHODS } from '../reduction/registry';
import { ChatController } from './chatController';
import { ChatViews } from './chatViews';
import { EngineClient } from '../client/engineClient';
import { GpuSetup, cudaHostEnvironment } from './gpuSetup';
import { ModelManager } from './modelManager';
import { BUDGET_HINT, parseBudget } from '../common/budget';
import { FIGURES_DEPEND_ON, MAIN_SETTINGS, budgetChoiceDescription, choiceTarget } from './settings';
import { AUTO_METHOD, NO_REDUCTION } from '../common/reductionChoice';
import { quantizingProgress } from '../common/quantization';
import { CHOOSE_REDUCTION_COMMAND, SpeedupStatusBar } from './statusBar';
import { StatusActivities } from './activity';
import { REPLY_ACTIVITY } from './replies';

/** What activate() returns to other extensions (and to the Electron smoke test). */
export interface FicocoApi {
  /** Asks about image files in the chat, as a user would, and resolves with the finished turn. */
  ask(question: string, images: readonly vscode.Uri[]): Promise<Turn | undefined>;
  /** The status bar item's text now, e.g. `$(zap) 3.1×`. */
  readonly statusText: string;
}

/** The window's chat, whose last save deactivate waits for. */
let openChat: ChatController | undefined;

export function activate(context: vscode.ExtensionContext): FicocoApi {
  const activationStarted = performance.now();
  const log = vscode.window.createOutputChannel('FiCoCo Engine', { log: true });
  const statusBar = new SpeedupStatusBar();
  const engine = new EngineClient({
    hostModule: vscode.Uri.joinPath(context.extensionUri, 'dist', 'host.js').fsPath,
    log: (line) => log.info(line),
    // Once ORT's CUDA runtime is installed in global storage, the engine runs it from there.
    environment: () => cudaHostEnvironment(context),
    // The sessions still open after the last layer: back to "Loading model" for those seconds.
    onLoadProgress: ({ quantization, done, total }) =>
      statusBar.busy(done < total ? quantizingProgress(quantization, done, total) : REPLY_ACTIVITY.loading),
  });
  const views = new ChatViews(context.extensionUri, log);
  // Replies and a model download share the status bar: one ending shows what the other is doing.
  const status = new StatusActivities(statusBar);
  const chat = new ChatController(context, engine, views, status, log);
  openChat = chat;
  const gpuSetup = new GpuSetup(context, engine, log);
  context.subscriptions.push(
    log,
    statusBar,
    views,
    chat,
    { dispose: () => engine.dispose() },
    vscode.window.registerWebviewViewProvider(ChatViews.viewType, views),
    // Editor tabs of the chat come back after a reload (package.json activates on onWebviewPanel:ficoco.chatPanel).
    vscode.window.registerWebviewPanelSerializer(ChatViews.panelType, views),
    vscode.commands.registerCommand('ficoco.openChat', () => views.reveal()),
    vscode.commands.registerCommand('ficoco.openChatInEditor', () => views.openInEditor()),
    vscode.commands.registerCommand('ficoco.newChat', () => chat.newChat()),
    vscode.commands.registerCommand('ficoco.stop', () => chat.stopLatest()),
    vscode.commands.registerCommand('ficoco.setEngineApiKey', () => chat.setEngineApiKey()),
    vscode.commands.registerCommand('ficoco.attachImage', async () => {
      await views.reveal();
      await chat.attachFromDialog();
    }),
    // From the Explorer the arguments are the clicked file and the selection; from the image preview, its file.
    vscode.commands.registerCommand('ficoco.askAboutImage', async (target?: unknown, selection?: unknown) => {
      const uris =
        Array.isArray(selection) && selection.every((u) => u instanceof vscode.Uri)
          ? selection
          : target instanceof vscode.Uri
            ? [target]
            : [];
      if (uris.length === 0) {
        await views.reveal();
        await chat.attachFromDialog();
      } else {
        await chat.addFiles(uris);
      }
    }),
    vscode.commands.registerCommand(CHOOSE_REDUCTION_COMMAND, chooseReduction),
    // The last answer's speedup would read as the new model's or reduction's.
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (FIGURES_DEPEND_ON.some((setting) => event.affectsConfiguration(setting)))
        status.changeFigures((line) => line.settingsChanged());
    }),
    vscode.commands.registerCommand('ficoco.showEngineLog', () => log.show()),
    vscode.commands.registerCommand('ficoco.openSettings', () =>
      vscode.commands.executeCommand('workbench.action.openSettings', '@ext:ficoco.ficoco-vision'),
    ),
    ...new ModelManager(context, engine, status, log).register(),
    gpuSetup.register(),
  );
  void gpuSetup.offerIfUseful();
  log.info(`activated in ${(performance.now() - activationStarted).toFixed(1)} ms`);
  return {
    async ask(question, images) {
      await chat.addFiles(images);
      return chat.ask(question);
    },
    get statusText() {
      return statusBar.text;
    },
  };
}

/** VS Code waits (a few seconds) for the promise: a save of the chat in flight, or the last one, ends on disk. */
export function deactivate(): Promise<void> | undefined {
  return openChat?.close();
}

/**
 * Method, budget, reduction off, or the settings; a choice is saved in the user settings (the workspace's when it sets
 * the setting) and used from the next question.
 */
async function chooseReduction(): Promise<void> {
  const configuration = vscode.workspace.getConfiguration('ficoco');
  const method = configuration.get<string>(
    'reduction.method',
    String(MAIN_SETTINGS['ficoco.reduction.method'].default),
  );
  const budget = configuration.get<string>(
    'reduction.budget',
    String(MAIN_SETTINGS['ficoco.reduction.budget'].default),
  );
  type Choice = vscode.QuickPickItem & { run: () => Thenable<unknown> };
  const setMethod = (name: string) => () => saveChoice(configuration, 'reduction.method', name);
  const choices: Choice[] = [
    {
      label: '$(symbol-number) Budget…',
      description: budgetChoiceDescription(method, budget),
      run: () => chooseBudget(configuration, budget),
    },
    {
      label: '$(sparkle) Automatic',
      description: method === AUTO_METHOD ? 'current' : "the model's measured or published setting",
      run: setMethod(AUTO_METHOD),
    },
    {
      label: '$(circle-slash) Reduction off',
      description: method === NO_REDUCTION ? 'current' : 'every visual token',
      run: setMethod(NO_REDUCTION),
    },
    { label: '', kind: vscode.QuickPickItemKind.Separator, run: async () => undefined },
    ...METHODS.map((m): Choice => ({
      label: m.name,
      description: m.name === method ? 'current' : '',
      detail: m.description,
      run: setMethod(m.name),
    })),
    { label: '', kind: vscode.QuickPickItemKind.Separator, run: async () => undefined },
    {
      label: '$(gear) Open Settings',
      run: () => vscode.commands.executeCommand('workbench.action.openSettings', 'ficoco.reduction'),
    },
  ];
  const picked = await vscode.window.showQuickPick(choices, {
    title: 'FiCoCo visual token reduction',
    placeHolder: `Now: ${method === NO_REDUCTION ? 'off' : method === AUTO_METHOD ? 'automatic' : `${method}, ${budget}`}`,
    matchOnDetail: true,
  });
  await picked?.run();
}

/** Asks for a budget, starting from `budget`, the one set now (or the setting's default). */
async function chooseBudget(configuration: vscode.WorkspaceConfiguration, budget: string): Promise<void> {
  const value = await vscode.window.showInputBox({
    title: 'Visual tokens kept per image',
    prompt: `Visual tokens kept per image: ${BUDGET_HINT}.`,
    value: budget,
    validateInput: (text) => (parseBudget(text) ? undefined : `Give ${BUDGET_HINT}.`),
  });
  if (value !== undefined) await saveChoice(configuration, 'reduction.budget', value.trim());
}

/** Saves a choice where it takes effect: the user settings, or the workspace's when the workspace sets it. */
function saveChoice(configuration: vscode.WorkspaceConfiguration, key: string, value: string): Thenable<void> {
  const target =
    choiceTarget(configuration.inspect(key)) === 'workspace'
      ? vscode.ConfigurationTarget.Workspace
      : vscode.ConfigurationTarget.Global;
  return configuration.update(key, value, target);
}
