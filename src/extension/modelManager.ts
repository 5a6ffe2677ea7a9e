/**
 * The model commands: Download Model (presets or any Hub repository, consent first, progress with cancel,
 * resume), Use Local Model Folder, Delete Model, Reveal Model Folder and Set Hugging Face Token. Downloads live in
 * the extension's global storage; the chosen model is the `ficoco.modelPath` setting; the token lives in VS Code's
 * SecretStorage (never in settings) and goes only to the Hub endpoint, over https.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { FicocoError } from '../common/errors';
import { checkDiskRoom } from '../hub/diskRoom';
import { downloadModel } from '../hub/download';
import { DownloadPlan, ModelRequest, planDownload, verificationSummary } from '../hub/downloadPlan';
import { DEFAULT_HUB_ENDPOINT } from '../hub/hubHttp';
import { DownloadSummary } from '../hub/downloadSummary';
import { formatBytes } from '../common/bytes';
import {
  deletePartialDownload,
  deleteStoredModel,
  freeBytes,
  listPartialDownloads,
  listStoredModels,
  missingModelFiles,
} from '../hub/store';
import { BUILTIN_MODEL_PATH, MODEL_PRESETS } from '../hub/presets';
import { byteProgress } from './byteProgress';
import { abortSignalOf } from './cancellation';
import { promptForSecret } from './secrets';
import type { EngineClient } from '../client/engineClient';
import { expandModelPath, modelPathNames } from './settings';
import type { StatusActivities } from './activity';

export const MODEL_COMMANDS = {
  download: 'ficoco.downloadModel',
  useLocalFolder: 'ficoco.useLocalModelFolder',
  delete: 'ficoco.deleteModel',
  reveal: 'ficoco.revealModelFolder',
  setToken: 'ficoco.setHubToken',
} as const;

/** The download's key among the status bar's activities (a reply's is `turn/kind`). */
const DOWNLOAD_ACTIVITY = 'download';

/** The SecretStorage key of the Hugging Face access token. */
const HUB_TOKEN_SECRET = 'ficoco.hubToken';

type Pick<T> = vscode.QuickPickItem & { value: T };

export class ModelManager {
  private downloading = false;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly engine: EngineClient,
    private readonly status: StatusActivities,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  register(): vscode.Disposable[] {
    return [
      vscode.commands.registerCommand(MODEL_COMMANDS.download, () => this.reportFailure(this.download())),
      vscode.commands.registerCommand(MODEL_COMMANDS.useLocalFolder, () => this.reportFailure(this.useLocalFolder())),
      vscode.commands.registerCommand(MODEL_COMMANDS.delete, () => this.reportFailure(this.delete())),
      vscode.commands.registerCommand(MODEL_COMMANDS.reveal, () => this.reportFailure(this.reveal())),
      vscode.commands.registerCommand(MODEL_COMMANDS.setToken, () => this.reportFailure(this.setToken())),
    ];
  }

  private get root(): string {
    return vscode.Uri.joinPath(this.context.globalStorageUri, 'models').fsPath;
  }

  private async download(): Promise<void> {
    if (this.downloading)
      return void vscode.window.showInformationMessage(
        'FiCoCo: a model is downloading already; its progress is in the notifications.',
      );
    const request = await this.chooseRepository();
    if (!request) return;
    const plan = await vscode.window.withProgress(
      {
        location: vscode.ProgressLocation.Notification,
        title: `FiCoCo: asking ${request.endpoint} about ${request.repo}…`,
        cancellable: true,
      },
      async (_progress, token) => {
        return planDownload(request, { signal: abortSignalOf(token) }).catch((error: unknown) => {
          if (error instanceof FicocoError && error.kind === 'cancelled') return undefined;
          throw error;
        });
      },
    );
    if (!plan) return;
    if (plan.tokenWithheld)
      void vscode.window.showWarningMessage(
        `FiCoCo: your Hugging Face token was not sent to ${request.endpoint}: tokens go only over https.`,
      );
    if (plan.existing)
      return this.offerToUse(
        plan.folder,
        `${request.repo} is already on this machine (${plan.existing === 'hf-cache' ? 'in the Hugging Face cache' : 'downloaded before'}).`,
      );
    const free = freeBytes(this.root);
    checkDiskRoom(plan, free);
    const consent = await vscode.window.showInformationMessage(
      `Download ${request.repo} (${formatBytes(plan.totalBytes)})?`,
      { modal: true, detail: consentDetail(plan, free) },
      'Download',
    );
    if (consent !== 'Download') return;
    this.downloading = true;
    try {
      const done = await this.runDownload(plan);
      if (done)
        await this.offerToUse(
          done.folder,
          done.summary.completedElsewhere
            ? `${request.repo}: ${done.summary.describe()}.`
            : `Downloaded ${request.repo} (${formatBytes(plan.totalBytes)}).`,
        );
    } finally {
      this.downloading = false;
      this.status.end(DOWNLOAD_ACTIVITY);
    }
  }

  /** A preset, or any owner/name[@revision] on the configured endpoint. */
  private async chooseRepository(): Promise<ModelRequest | undefined> {
    const endpoint = vscode.workspace
      .getConfiguration('ficoco')
      .get<string>('hubEndpoint', DEFAULT_HUB_ENDPOINT)
      .trim()
      .replace(/\/+$/, '');
    if (!/^https?:\/\/\S+$/.test(endpoint))
      throw new FicocoError(
        `ficoco.hubEndpoint is "${endpoint}"; set it to an http:// or https:// address such as ${DEFAULT_HUB_ENDPOINT}.`,
        'input',
      );
    const downloaded = new Set(listStoredModels(this.root).map((m) => `${m.repo}@${m.commit}`));
    const presets = MODEL_PRESETS.filter((preset) => preset.hub).map((preset): Pick<ModelRequest | 'other'> => ({
      label: `${preset.screenshots.highResolution ? '$(screen-full) ' : ''}${preset.title}`,
      description: [
        formatBytes(preset.approxBytes),
        preset.licence,
        ...(preset.recommended ? ['recommended'] : []),
        ...(downloaded.has(`${preset.hub!.repo}@${preset.hub!.revision}`) ? ['downloaded'] : []),
      ].join(' · '),
      detail: `${preset.hub!.repo} — screenshots: ${preset.screenshots.summary}. ${preset.hardware}`,
      value: {
        repo: preset.hub!.repo,
        revision: preset.hub!.revision,
        files: preset.hub!.files,
        endpoint,
        root: this.root,
      },
    }));
    const other: Pick<ModelRequest | 'other'> = {
      label: '$(cloud-download) Other Hub repository…',
      detail: 'Any LLaVA model in the llava-hf layout, as owner/name or owner/name@revision.',
      value: 'other',
    };
    const picked = await vscode.window.showQuickPick([...presets, other], {
      title: 'FiCoCo: Download Model',
      placeHolder: `From ${endpoint}`,
      matchOnDetail: true,
    });
    if (!picked) return undefined;
    const accessToken = await this.context.secrets.get(HUB_TOKEN_SECRET);
    if (picked.value !== 'other') return { ...picked.value, ...(accessToken ? { accessToken } : {}) };
    const typed = await vscode.window.showInputBox({
      title: 'FiCoCo: Download Model',
      prompt: `A repository on ${endpoint}`,
      placeHolder: 'llava-hf/llava-1.5-7b-hf or owner/name@revision',
      validateInput: (text) =>
        /^[\w.-]+\/[\w.-]+(@[\w./-]+)?$/.test(text.trim()) ? undefined : 'Give owner/name, optionally @revision.',
    });
    if (!typed) return undefined;
    const [repo, revision = 'main'] = typed.trim().split('@');
    return { repo, revision, endpoint, root: this.root, ...(accessToken ? { accessToken } : {}) };
  }

  /** Stores the token in SecretStorage; an empty entry removes it. */
  private setToken(): Promise<void> {
    return promptForSecret(this.context.secrets, {
      key: HUB_TOKEN_SECRET,
      title: 'FiCoCo: Hugging Face access token',
      purpose: 'For gated or private repositories; sent only to the Hub endpoint, over https.',
      placeHolder: 'hf_…',
      stored: 'the Hugging Face token is stored; downloads send it to the Hub endpoint.',
      removed: 'the Hugging Face token was removed.',
    });
  }

  /**
   * The download itself, in a cancellable notification: the model folder and what this window did for it (another
   * window or CLI run may have completed it since the plan); undefined when the user cancelled.
   */
  private runDownload(plan: DownloadPlan): Thenable<{ folder: string; summary: DownloadSummary } | undefined> {
    const title = `FiCoCo: downloading ${plan.request.repo}`;
    return vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title, cancellable: true },
      async (progress, token) => {
        const summary = new DownloadSummary();
        const report = byteProgress(progress, {
          showRate: true,
          onPercent: (percent) => this.status.busy(DOWNLOAD_ACTIVITY, `Downloading ${percent.toFixed(0)} %`),
        });
        try {
          const folder = await downloadModel(plan, {
            signal: abortSignalOf(token),
            onProgress: (downloaded) => {
              summary.noteProgress(downloaded);
              report(downloaded.bytesDone, downloaded.bytesTotal, downloaded.bytesFetched);
            },
          });
          this.log.info(`download of ${plan.request.repo}@${plan.commit} into ${folder}: ${summary.describe()}`);
          return { folder, summary };
        } catch (error) {
          if (error instanceof FicocoError && error.kind === 'cancelled') {
            void vscode.window.showInformationMessage(
              `FiCoCo: download of ${plan.request.repo} paused. Run Download Model again to resume where it stopped.`,
            );
            return undefined;
          }
          throw error;
        }
      },
    );
  }

  private async offerToUse(folder: string, message: string): Promise<void> {
    const choice = await vscode.window.showInformationMessage(`FiCoCo: ${message}`, 'Use It', 'Reveal Folder');
    if (choice === 'Use It') await this.setModelPath(folder);
    if (choice === 'Reveal Folder') await vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(folder));
  }

  private async useLocalFolder(): Promise<void> {
    const [picked] =
      (await vscode.window.showOpenDialog({
        canSelectFolders: true,
        canSelectFiles: false,
        openLabel: 'Use This Model',
        title: 'FiCoCo: a Hugging Face LLaVA model folder',
      })) ?? [];
    if (!picked) return;
    const missing = missingModelFiles(picked.fsPath);
    if (missing.length > 0)
      throw new FicocoError(
        `${picked.fsPath} is not a model folder FiCoCo can load: it has no ${missing.join(', ')}.`,
        'model-folder',
      );
    await this.setModelPath(picked.fsPath);
  }

  private async delete(): Promise<void> {
    const stored = listStoredModels(this.root).map((model): Pick<{ folder: string; partial: boolean }> => ({
      label: model.repo,
      description: `${model.commit.slice(0, 7)} · ${formatBytes(model.bytes)}`,
      detail: model.folder,
      value: { folder: model.folder, partial: false },
    }));
    const partial = listPartialDownloads(this.root).map((download): Pick<{ folder: string; partial: boolean }> => ({
      label: `$(debug-pause) ${path.basename(download.folder)}`,
      description: `unfinished download · ${formatBytes(download.bytes)}${download.inUse ? ' · downloading now' : ''}`,
      detail: download.folder,
      value: { folder: download.folder, partial: true },
    }));
    if (stored.length + partial.length === 0) {
      return void vscode.window.showInformationMessage(
        'FiCoCo: no downloaded models. (Models used from the Hugging Face cache or a local folder are not ' +
          "FiCoCo's to delete.)",
      );
    }
    const picked = await vscode.window.showQuickPick([...stored, ...partial], { title: 'FiCoCo: Delete Model' });
    if (!picked) return;
    const confirm = await vscode.window.showWarningMessage(
      `Delete ${picked.label} (${picked.description})?`,
      { modal: true, detail: picked.detail },
      'Delete',
    );
    if (confirm !== 'Delete') return;
    if (picked.value.partial) {
      deletePartialDownload(this.root, picked.value.folder);
      return void vscode.window.showInformationMessage(
        `FiCoCo: deleted the unfinished download ${path.basename(picked.value.folder)}.`,
      );
    }
    const inUse = modelPathNames(this.modelPath(), picked.value.folder);
    // The engine may hold the weight files open (Windows cannot delete them then).
    if (inUse) this.engine.stop();
    deleteStoredModel(this.root, picked.value.folder);
    if (inUse) await this.setModelPath('');
    void vscode.window.showInformationMessage(
      `FiCoCo: deleted ${picked.label}${inUse ? '; the built-in model answers from now on' : ''}.`,
    );
  }

  private async reveal(): Promise<void> {
    const folder = this.modelPath() || vscode.Uri.joinPath(this.context.extensionUri, ...BUILTIN_MODEL_PATH).fsPath;
    await vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(folder));
  }

  private modelPath(): string {
    return expandModelPath(vscode.workspace.getConfiguration('ficoco').get<string>('modelPath', '').trim());
  }

  private async setModelPath(folder: string): Promise<void> {
    await vscode.workspace.getConfiguration('ficoco').update('modelPath', folder, vscode.ConfigurationTarget.Global);
    if (folder)
      void vscode.window.showInformationMessage(
        `FiCoCo: the next answer comes from ${path.basename(path.dirname(folder))}/${path.basename(folder)}.`,
      );
  }

  private async reportFailure(work: Promise<void>): Promise<void> {
    try {
      await work;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.log.error(message);
      const choice = await vscode.window.showErrorMessage(`FiCoCo: ${message}`, 'Show Log');
      if (choice) this.log.show();
    }
  }
}

function consentDetail(plan: DownloadPlan, free: number): string {
  const { request } = plan;
  return [
    `${plan.files.length} files, ${formatBytes(plan.totalBytes)}, from ${request.endpoint} ` +
      `(${request.repo} at ${plan.commit.slice(0, 7)}).`,
    `Into ${plan.folder} (${formatBytes(free)} free).`,
    verificationSummary(plan),
    'Nothing else leaves this machine. You can cancel at any time; the download resumes where it stopped.',
    "Check the model's licence on its Hub page before use.",
  ].join('\n\n');
}
