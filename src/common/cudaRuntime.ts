/**
 * What the CUDA provider needs on this machine: ONNX Runtime's provider libraries beside libonnxruntime.so
 * (src/hub/cudaProvider.ts fetches them) and the CUDA 12 / cuDNN 9 runtime they link against. No ORT import:
 * the extension asks these questions too.
 *
 * ORT loads provider libraries from the folder of the libonnxruntime.so it runs. The extension keeps a copy of that
 * library with the providers in its global storage (its install folder is replaced by every update), and starts the
 * engine process with LD_LIBRARY_PATH on that folder: the binding finds libonnxruntime.so.1 through its RUNPATH
 * ($ORIGIN), which LD_LIBRARY_PATH overrides.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { missingLibraries } from './sharedLibraries';

/** ONNX Runtime's CUDA provider libraries (TensorRT's is left out: FiCoCo does not use it). */
export const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'] as const;
/** What ORT's CUDA provider links against (CUDA 12.x, cuDNN 9.x). */
export const CUDA_RUNTIME_LIBRARIES = [
  'libcudart.so.12',
  'libcublas.so.12',
  'libcublasLt.so.12',
  'libcufft.so.11',
  'libcurand.so.10',
  'libcudnn.so.9',
] as const;

/** The ORT shared library the Node binding loads on Linux. */
export const ORT_LIBRARY = 'libonnxruntime.so.1';
/** Set by the extension for the engine process: the folder it loads libonnxruntime.so from, when not the package's. */
export const ORT_LIBRARY_DIR_ENV = 'FICOCO_ORT_LIBRARY_DIR';

/** Linux x64: the one platform Microsoft.ML.OnnxRuntime.Gpu.Linux serves. */
export function isCudaPlatform(): boolean {
  return process.platform === 'linux' && process.arch === 'x64';
}

/** The version of the onnxruntime-node package in `onnxruntimeNodeFolder` (the CUDA libraries must match it). */
export function ortVersion(onnxruntimeNodeFolder: string): string {
  return (JSON.parse(fs.readFileSync(path.join(onnxruntimeNodeFolder, 'package.json'), 'utf8')) as { version: string })
    .version;
}

/** onnxruntime-node's folder of native files for this machine (where the binding looks for provider libraries). */
export function ortBinaryFolder(
  onnxruntimeNodeFolder: string,
  platform = process.platform,
  arch = process.arch,
): string {
  return path.join(onnxruntimeNodeFolder, 'bin', 'napi-v6', platform, arch);
}

export function cudaProviderInstalled(binaryFolder: string): boolean {
  return CUDA_PROVIDER_FILES.every((file) => fs.existsSync(path.join(binaryFolder, file)));
}

/** The folder of the libonnxruntime.so this process runs, where ORT looks for provider libraries. */
export function ortLibraryFolder(onnxruntimeNodeFolder: string, env: NodeJS.ProcessEnv = process.env): string {
  return env[ORT_LIBRARY_DIR_ENV] ?? ortBinaryFolder(onnxruntimeNodeFolder);
}

/** A folder of the extension's own for ORT `version`'s library and its CUDA providers. */
export function cudaRuntimeFolder(storageFolder: string, version: string): string {
  return path.join(storageFolder, `onnxruntime-${version}-cuda`);
}

/**
 * What an engine process's environment needs to run ORT from `runtimeFolder`; nothing when that folder is not complete.
 */
export function cudaRuntimeEnvironment(runtimeFolder: string, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (
    !isCudaPlatform() ||
    !fs.existsSync(path.join(runtimeFolder, ORT_LIBRARY)) ||
    !cudaProviderInstalled(runtimeFolder)
  )
    return {};
  return {
    LD_LIBRARY_PATH: [runtimeFolder, env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
    [ORT_LIBRARY_DIR_ENV]: runtimeFolder,
  };
}

/** An NVIDIA driver is loaded (the CUDA provider is worth offering). */
export function nvidiaDriverPresent(): boolean {
  return isCudaPlatform() && fs.existsSync('/proc/driver/nvidia/version');
}

/**
 * The CUDA runtime libraries none of the loader's places hold: `ldconfig -p`'s cache, LD_LIBRARY_PATH,
 * CUDA_PATH/lib64 and /usr/local/cuda/lib64. `ldconfigOutput` is for tests.
 */
export function missingCudaRuntime(env: NodeJS.ProcessEnv = process.env, ldconfigOutput?: string): string[] {
  const folders = [env.CUDA_PATH ? path.join(env.CUDA_PATH, 'lib64') : '', '/usr/local/cuda/lib64'];
  return missingLibraries(CUDA_RUNTIME_LIBRARIES, folders, env, ldconfigOutput);
}
