/**
 * "FiCoCo: Install CUDA Provider": fetches ONNX Runtime's CUDA provider libraries for the packaged ORT
 * version (consent first; the lookup and the download each with progress and cancel), and offers to once when an
 * NVIDIA driver is present. They go into the extension's global storage with a copy of ORT's own library, which an
 * update does not replace; the engine process runs ORT from there (src/common/cudaRuntime.ts).
 */
import * as vscode from 'vscode';
import { FicocoError } from '../common/errors';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  cudaProviderInstalled,
  cudaRuntimeEnvironment,
  cudaRuntimeFolder,
  isCudaPlatform,
  missingCudaRuntime,
  nvidiaDriverPresent,
  ortBinaryFolder,
  ortVersion,
} from '../common/cudaRuntime';
import { CudaPackage, findCudaPackage, installCudaProvider } from '../hub/cudaProvider';
import { formatBytes } from '../common/bytes';
import { byteProgress } from './byteProgress';
import { abortSignalOf } from './cancellation';
import type { EngineClient } from '../client/engineClient';

export const INSTALL_CUDA_COMMAND = 'ficoco.installCudaProvider';
const DECLINED_KEY = 'ficoco.cudaOfferDeclined';

function packagedOrtFolder(context: vscode.ExtensionContext): string {
  return vscode.Uri.joinPath(context.extensionUri, 'node_modules', 'onnxruntime-node').fsPath;
}

/** Where this ORT version's library and CUDA providers are installed. */
function installedRuntimeFolder(context: vscode.ExtensionContext): string {
  return cudaRuntimeFolder(context.globalStorageUri.fsPath, ortVersion(packagedOrtFolder(context)));
}

/** The engine process's environment for the installed CUDA runtime (nothing until it is installed). */
export function cudaHostEnvironment(context: vscode.ExtensionContext): NodeJS.ProcessEnv {
  return cudaRuntimeEnvironment(installedRuntimeFolder(context));
}

/** An NVIDIA driver is loaded and this ORT version's CUDA provider is not installed: installing it would help. */
export function cudaProviderMissing(context: vscode.ExtensionContext): boolean {
  return nvidiaDriverPresent() && !cudaProviderInstalled(installedRuntimeFolder(context));
}

/** True where the CUDA provider runs: Linux x64 (package.json's `when` for Install CUDA Provider…). */
const CUDA_PLATFORM_CONTEXT = 'ficoco.cudaPlatform';

export class GpuSetup {
  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly engine: EngineClient,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  register(): vscode.Disposable {
    // The command shows in the Command Palette only where the CUDA provider runs (where the extension runs, remotely too).
    void vscode.commands.executeCommand('setContext', CUDA_PLATFORM_CONTEXT, isCudaPlatform());
    return vscode.commands.registerCommand(INSTALL_CUDA_COMMAND, async () => {
      try {
        await this.install();
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        this.log.error(message);
        void vscode.window.showErrorMessage(`FiCoCo: ${message}`);
      }
    });
  }

  private get ortFolder(): string {
    return packagedOrtFolder(this.context);
  }

  private get runtimeFolder(): string {
    return installedRuntimeFolder(this.context);
  }

  /** Once per machine: an NVIDIA driver is loaded, CUDA may be used, and its provider libraries are missing. */
  async offerIfUseful(): Promise<void> {
    const provider = vscode.workspace.getConfiguration('ficoco').get<string>('provider', 'auto');
    if (!cudaProviderMissing(this.context) || !['auto', 'cuda'].includes(provider)) return;
    if (this.context.globalState.get<boolean>(DECLINED_KEY)) return;
    const choice = await vscode.window.showInformationMessage(
      "FiCoCo: this machine has an NVIDIA GPU. Install ONNX Runtime's CUDA provider to answer on it?",
      'Install…',
      'Not Now',
      "Don't Ask Again",
    );
    if (choice === 'Install…') await vscode.commands.executeCommand(INSTALL_CUDA_COMMAND);
    if (choice === "Don't Ask Again") await this.context.globalState.update(DECLINED_KEY, true);
  }

  private async install(): Promise<void> {
    if (!isCudaPlatform()) {
      throw new FicocoError(
        `The CUDA provider is for Linux x64; this is ${process.platform} ${process.arch}, where ` +
          `${process.platform === 'win32' ? 'DirectML' : process.platform === 'darwin' ? 'CoreML' : 'the CPU'} ` +
          `is used.`,
        'provider',
      );
    }
    const binaries = this.runtimeFolder;
    const version = ortVersion(this.ortFolder);
    // Cancellable, and bounded by findCudaPackage's deadline: a network that drops packets must not spin for minutes.
    const found = await vscode.window.withProgress(
      {
        location: vscode.ProgressLocation.Notification,
        title: `FiCoCo: looking up ONNX Runtime ${version}'s CUDA provider on nuget.org…`,
        cancellable: true,
      },
      (_progress, token) =>
        findCudaPackage(version, { signal: abortSignalOf(token) }).catch((error: unknown) => {
          if (error instanceof FicocoError && error.kind === 'cancelled') return undefined;
          throw error;
        }),
    );
    if (!found) return;
    const missing = missingCudaRuntime();
    const consent = await vscode.window.showInformationMessage(
      `Install ONNX Runtime's CUDA provider (${formatBytes(found.bytes)} download)?`,
      {
        modal: true,
        detail: [
          `Microsoft.ML.OnnxRuntime.Gpu.Linux ${version} from nuget.org, checked against its published ` +
            `SHA-512; its two provider libraries and a copy of ONNX Runtime's own go into ${binaries}, which ` +
            `extension updates keep.`,
          missing.length > 0
            ? `CUDA 12 and cuDNN 9 are needed too, and ${missing.join(', ')} ` +
              `${missing.length === 1 ? 'is' : 'are'} not found on this machine: install them (NVIDIA's packages) ` +
              `or CUDA will fall back to the CPU.`
            : 'CUDA 12 and cuDNN 9 were found.',
          'Nothing else leaves this machine.',
        ].join('\n\n'),
      },
      'Install',
    );
    if (consent !== 'Install') return;
    if (await this.download(found, binaries)) {
      // The engine process loaded ORT without the provider: a fresh one answers the next question, once an answer in
      // flight is done (stop() would cut it off, as if the user had pressed Stop).
      this.engine.restartWhenIdle();
      void vscode.window.showInformationMessage(
        `FiCoCo: the CUDA provider is installed; the next answer tries it${missing.length > 0 ? ` (still missing: ${missing.join(', ')})` : ''}. The status bar tooltip says which provider answered.`,
      );
    }
  }

  /** Runtimes installed for earlier ORT versions: no engine of this extension can load them any more. */
  private removeOtherVersions(current: string): void {
    const storage = path.dirname(current);
    for (const name of fs.readdirSync(storage)) {
      const folder = path.join(storage, name);
      if (folder !== current && /^onnxruntime-.+-cuda$/.test(name)) fs.rmSync(folder, { recursive: true, force: true });
    }
  }

  private download(found: CudaPackage, binaries: string): Thenable<boolean> {
    return vscode.window.withProgress(
      {
        location: vscode.ProgressLocation.Notification,
        title: 'FiCoCo: downloading the CUDA provider',
        cancellable: true,
      },
      async (progress, token) => {
        const signal = abortSignalOf(token);
        try {
          await installCudaProvider(found, binaries, {
            signal,
            onProgress: byteProgress(progress),
            copyRuntimeFrom: ortBinaryFolder(this.ortFolder),
          });
          this.removeOtherVersions(binaries);
          this.log.info(`installed the CUDA provider libraries into ${binaries}`);
          return true;
        } catch (error) {
          if (signal.aborted) return false;
          throw error;
        }
      },
    );
  }
}
