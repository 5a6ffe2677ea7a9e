import * as path from 'node:path';
import { FicocoError } from '../common/errors';
import {
  cudaProviderInstalled,
  isCudaPlatform,
  missingCudaRuntime,
  nvidiaDriverPresent,
  ortBinaryFolder,
  ortVersion,
} from '../common/cudaRuntime';
import { providerCandidates, thisMachine } from '../engine/runtime/provider';
import { vulkanMissing } from '../common/vulkan';
import { NUGET_FEED, findCudaPackage, installCudaProvider } from '../hub/cudaProvider';
import { formatBytes } from '../common/bytes';
import { CommandOptions, parseCommandArgs } from './args';

export const PROVIDERS_USAGE = `Usage:
  ficoco providers                        what this machine's ONNX Runtime can run on, and what auto tries
  ficoco providers install-cuda [--feed URL]
                                          fetch ONNX Runtime's CUDA provider libraries (Linux x64) from
                                          Microsoft.ML.OnnxRuntime.Gpu.Linux on nuget.org, checked by SHA-512
`;

export const PROVIDERS_OPTIONS = {
  feed: { type: 'string', default: NUGET_FEED },
  help: { type: 'boolean' },
} satisfies CommandOptions;

export async function providersCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('providers', {
    args,
    allowPositionals: true,
    options: PROVIDERS_OPTIONS,
  });
  if (values.help) {
    process.stdout.write(PROVIDERS_USAGE);
    return 0;
  }
  const ortFolder = path.dirname(require.resolve('onnxruntime-node/package.json'));
  const binaries = ortBinaryFolder(ortFolder);
  if (positionals[0] === 'install-cuda') {
    if (!isCudaPlatform())
      throw new FicocoError(
        `the CUDA provider is for Linux x64; this is ${process.platform} ${process.arch}.`,
        'provider',
      );
    const found = await findCudaPackage(ortVersion(ortFolder), { feed: values.feed });
    process.stderr.write(`downloading ${found.url} (${formatBytes(found.bytes)})\n`);
    await installCudaProvider(found, binaries);
    process.stdout.write(`installed ${binaries}\n`);
    const missing = missingCudaRuntime();
    if (missing.length > 0) process.stdout.write(`CUDA 12 / cuDNN 9 still missing: ${missing.join(', ')}\n`);
    return 0;
  }
  if (positionals.length > 0)
    throw new FicocoError(
      `ficoco providers ${positionals.join(' ')}: expected nothing or "install-cuda". See \`ficoco providers --help\`.`,
      'input',
    );
  process.stdout.write(providerReport().join('\n') + '\n');
  return 0;
}

/** What this machine's ONNX Runtime can run on, one line per fact (`ficoco providers`, bench/gpu-check.ts). */
export function providerReport(): string[] {
  const binaries = ortBinaryFolder(path.dirname(require.resolve('onnxruntime-node/package.json')));
  const machine = thisMachine();
  const cuda = isCudaPlatform();
  const missing = cuda ? missingCudaRuntime() : [];
  return [
    `platform            ${process.platform} ${process.arch}`,
    `built in            ${[...machine.bundled].join(', ')}`,
    `CUDA provider       ${cuda ? (cudaProviderInstalled(binaries) ? `installed in ${binaries}` : 'not installed (ficoco providers install-cuda)') : 'not for this platform'}`,
    ...(cuda
      ? [
          `NVIDIA driver       ${nvidiaDriverPresent() ? 'loaded' : 'not loaded'}`,
          `CUDA 12 / cuDNN 9   ${missing.length === 0 ? 'found' : `missing ${missing.join(', ')}`}`,
        ]
      : []),
    ...(process.platform === 'linux' && machine.bundled.has('webgpu')
      ? [`Vulkan              ${machine.webgpuBackend ? 'found' : `${vulkanMissing()} (WebGPU needs it)`}`]
      : []),
    `auto tries          ${providerCandidates('auto', machine).join(' → ')}`,
  ];
}
