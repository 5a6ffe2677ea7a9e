import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ElemType, GraphBuilder } from '../graph/builder';
import {
  cudaProviderInstalled,
  isCudaPlatform,
  missingCudaRuntime,
  nvidiaDriverPresent,
  ortLibraryFolder,
} from '../../common/cudaRuntime';
import { vulkanMissing } from '../../common/vulkan';

import { Precision, ProviderName, ProviderSetting } from '../../common/providers';

export { PROVIDERS, PROVIDER_SETTINGS, type ProviderName, type ProviderSetting } from '../../common/providers';
export type { Precision } from '../../common/providers';

/**
 * What this machine's ONNX Runtime can offer: the providers built into the binding, and whether CUDA's libraries are
 * there.
 */
export interface MachineProviders {
  platform: NodeJS.Platform;
  /** providers the binding has without extra libraries (ort.listSupportedBackends(), bundled) */
  bundled: ReadonlySet<string>;
  /** ONNX Runtime's CUDA provider libraries sit beside libonnxruntime.so */
  cudaLibraries: boolean;
  /**
   * WebGPU has a graphics API under it: on Linux Vulkan's loader and a driver (without them Dawn prints a warning of its
   * own and finds no adapter); D3D12 and Metal come with Windows and macOS
   */
  webgpuBackend: boolean;
}

/** `auto`'s order per platform, best first. */
const AUTO_ORDER: Partial<Record<NodeJS.Platform, ProviderName[]>> = {
  linux: ['cuda', 'webgpu'],
  win32: ['dml', 'webgpu'],
  darwin: ['coreml', 'webgpu'],
};

/** The providers to try, best first; CPU always ends the list. `auto` keeps only what this machine has. */
export function providerCandidates(setting: ProviderSetting, machine: MachineProviders): ProviderName[] {
  if (setting === 'cpu') return ['cpu'];
  if (setting !== 'auto') return [setting, 'cpu'];
  const available = (provider: ProviderName) =>
    provider === 'cuda'
      ? machine.cudaLibraries
      : machine.bundled.has(provider) && (provider !== 'webgpu' || machine.webgpuBackend);
  return [...(AUTO_ORDER[machine.platform] ?? []).filter(available), 'cpu'];
}

export function thisMachine(): MachineProviders {
  const bundled = new Set(
    ort
      .listSupportedBackends()
      .filter((backend) => backend.bundled)
      .map((backend) => backend.name),
  );
  const binaries = ortLibraryFolder(path.dirname(require.resolve('onnxruntime-node/package.json')));
  return {
    platform: process.platform,
    bundled,
    cudaLibraries: isCudaPlatform() && cudaProviderInstalled(binaries),
    webgpuBackend: process.platform !== 'linux' || (bundled.has('webgpu') && vulkanMissing() === undefined),
  };
}

/*
 * ORT's default logger is made once per process, with its first session, at ort.env.logLevel, and a later change is
 * ignored. The provider bridge writes to it: a GPU provider that fails to load would be said again on stderr as a red
 * [E:onnxruntime…] line besides the reason the engine gives. So it is set here, before any session whichever provider
 * comes first (the extension's engine process loads CPU and GPU models in turn); each session logs at its own level.
 */
ort.env.logLevel = 'fatal';

/** COREML_FLAG_CREATE_MLPROGRAM: the ML Program format, which runs float16 and more operators than NeuralNetwork. */
const COREML_ML_PROGRAM = 0x010;

/** The session options of one provider (what the engine hands ORT; unit-tested where the provider cannot run). */
export function sessionOptions(
  provider: ProviderName,
  options: { weightsFolder: string; threads?: number; spinning?: boolean; shapesVary?: boolean },
): ort.InferenceSession.SessionOptions {
  const executionProvider: ort.InferenceSession.ExecutionProviderConfig =
    provider === 'cuda' || provider === 'dml'
      ? { name: provider, deviceId: 0 }
      : provider === 'coreml'
        ? { name: 'coreml', coreMlFlags: COREML_ML_PROGRAM }
        : provider;
  return {
    executionProviders: [executionProvider],
    graphOptimizationLevel: 'all',
    // DirectML supports neither memory patterns nor parallel execution (ORT's DirectML provider notes).
    ...(provider === 'dml' ? { enableMemPattern: false, executionMode: 'sequential' as const } : {}),
    // A memory pattern is planned per input shape, and each new shape's block grows the arena again.
    ...(options.shapesVary ? { enableMemPattern: false } : {}),
    // A GPU session logs only what is fatal (a failure reaches the user as an error); a CPU one ORT's warnings.
    logSeverityLevel: provider === 'cpu' ? 2 : 4,
    ...(options.threads ? { intraOpNumThreads: options.threads } : {}),
    extra: {
      session: {
        model_external_initializers_file_folder_path: options.weightsFolder,
        // Each segment has its own thread pool; idle pools must not spin while the next segment runs.
        intra_op: { allow_spinning: options.spinning ? '1' : '0' },
      },
    },
  };
}

export function computeTypeFor(provider: ProviderName, precision: Precision = 'auto'): ElemType {
  if (precision !== 'auto') return precision === 'float16' ? ElemType.float16 : ElemType.float32;
  return provider === 'cpu' || provider === 'coreml' ? ElemType.float32 : ElemType.float16;
}

/**
 * The candidates from the first provider that opens a session of one operator, and why those before it did not. The
 * provider that will run decides how weights are quantized, so it is settled before they are.
 */
export async function probeProviders(
  candidates: readonly ProviderName[],
  precision?: Precision,
): Promise<{ candidates: ProviderName[]; failures: string[] }> {
  const failures: string[] = [];
  for (const [i, provider] of candidates.entries()) {
    if (provider === 'cpu') return { candidates: candidates.slice(i), failures };
    try {
      const session = await ort.InferenceSession.create(
        oneOperatorGraph(computeTypeFor(provider, precision)),
        sessionOptions(provider, { weightsFolder: process.cwd() }),
      );
      await session.release();
      return { candidates: candidates.slice(i), failures };
    } catch (error) {
      failures.push(notUsed(provider, error));
    }
  }
  throw new Error('unreachable: the CPU provider is always a candidate');
}

/** y = x·x: enough for a provider to load its libraries and claim a node. */
function oneOperatorGraph(type: ElemType): Uint8Array {
  const g = new GraphBuilder('probe', type);
  const x = g.input('x', type, [4]);
  g.output('y', g.op('Mul', [x, x], 'y'), type, [4]);
  return g.build();
}

/** Why a provider is not used, in the user's terms. */
function notUsed(provider: ProviderName, error: unknown): string {
  return `${provider} could not be used (${ortMessage(error)}${advice[provider]?.(thisMachine()) ?? ''})`;
}

export interface SessionFactoryOptions {
  /** the one real folder all weight files live in (external data resolves against it) */
  weightsFolder: string;
  /** the providers to try, best first (providerCandidates, or what probeProviders left) */
  candidates: readonly ProviderName[];
  /** why providers before the candidates were not used (probeProviders) */
  failures?: readonly string[];
  precision?: Precision;
  /** intra-op threads; ORT's default when absent */
  threads?: number;
  /**
   * called, with why the providers before it failed, before the first session falls back to the CPU: the load may
   * refuse what would not fit the machine's memory there (it throws)
   */
  beforeCpuFallback?: (failures: readonly string[]) => void;
}

/** How a session is run: whether its runs follow closely. */
export interface SessionWorkingSet {
  /**
   * the session runs back to back with little else between (a whole decoder, token after token): its idle threads
   * spin instead of sleeping, which saves waking them at every op of every step
   */
  backToBack?: boolean;
  /**
   * its inputs change shape from run to run (a vision tower's segment after a hook takes as many tokens as the hook
   * left): it plans no memory pattern. With patterns, FiCoCo-V cutting OneVision-0.5B's tower at every layer faulted in
   * 0.2 M fresh pages in the first 1080p question after a warm-up (25 s against 20 s later), and held 0.6 GiB more
   */
  shapesVary?: boolean;
}

/**
 * Creates ORT sessions on the best provider that loads. The first session settles the provider:
 * when the requested one fails, the engine falls back to CPU and remembers why.
 */
export class SessionFactory {
  private settled: ProviderName | undefined;
  fallbackReason: string | undefined;

  constructor(private readonly options: SessionFactoryOptions) {}

  /** The folder external data resolves against. */
  get weightsFolder(): string {
    return this.options.weightsFolder;
  }

  get provider(): ProviderName | undefined {
    return this.settled;
  }

  /** intra-op threads each session starts; undefined: ONNX Runtime's default */
  get threads(): number | undefined {
    return this.options.threads;
  }

  /** The compute type of the settled provider's graphs (and of its KV cache). */
  get computeType(): ElemType {
    return computeTypeFor(this.settled ?? 'cpu', this.options.precision);
  }

  /**
   * `graphFor` builds the graph for a compute type (it differs between CPU and GPU providers). Sessions keep ORT's CPU
   * arena: without it, faulting in fresh pages for every op's attention doubled a decoder segment's time at a 7k-token
   * prompt (the engine bounds each arena by the size of the prompt chunks instead).
   */
  async create(
    graphFor: (computeType: ElemType) => Uint8Array,
    workingSet: SessionWorkingSet = {},
  ): Promise<ort.InferenceSession> {
    const spinning = Boolean(workingSet.backToBack);
    const { shapesVary } = workingSet;
    const open = (bytes: Uint8Array, provider: ProviderName) =>
      ort.InferenceSession.create(bytes, sessionOptions(provider, { ...this.options, spinning, shapesVary }));
    if (this.settled) return open(graphFor(this.computeType), this.settled);
    const failures = [...(this.options.failures ?? [])];
    for (const provider of this.options.candidates) {
      if (provider === 'cpu' && provider !== this.options.candidates[0]) this.options.beforeCpuFallback?.(failures);
      try {
        const session = await open(graphFor(computeTypeFor(provider, this.options.precision)), provider);
        this.settled = provider;
        if (failures.length > 0) this.fallbackReason = `${failures.join('; ')}, running on CPU instead`;
        return session;
      } catch (error) {
        if (provider === 'cpu') throw error;
        failures.push(notUsed(provider, error));
      }
    }
    throw new Error('unreachable: the CPU provider is always a candidate');
  }
}

/** What a provider that failed to load lacks on this machine, where it is known. */
const advice: Partial<Record<ProviderName, (machine: MachineProviders) => string>> = {
  cuda: (machine) => cudaAdvice(machine),
  webgpu: (machine) => (machine.webgpuBackend ? '' : `; WebGPU needs Vulkan on Linux, and ${vulkanMissing()}`),
};

/**
 * Why CUDA could not load, in the user's terms: no NVIDIA driver (installing anything would not help), the provider
 * libraries, or CUDA 12 / cuDNN 9 themselves.
 */
export function cudaAdvice(
  machine: MachineProviders,
  missingRuntime: () => string[] = missingCudaRuntime,
  driverLoaded: () => boolean = nvidiaDriverPresent,
): string {
  if (!driverLoaded()) return '; no NVIDIA driver is loaded on this machine (CUDA needs an NVIDIA GPU on Linux x64)';
  if (!machine.cudaLibraries)
    return (
      '; ONNX Runtime\'s CUDA provider libraries are not installed: run "FiCoCo: Install CUDA Provider" or ' +
      '`ficoco providers install-cuda`'
    );
  const missing = missingRuntime();
  return missing.length > 0
    ? `; CUDA 12 and cuDNN 9 are needed and ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not found`
    : '';
}

/**
 * The first line of an ORT error, without the source location and condition of a failed check:
 * "…/webgpu_context.cc:136 onnxruntime::…::Initialize(…) adapter_result.status == … was false. Failed to get a
 * WebGPU adapter: No supported adapters" says only its last sentence to a user.
 */
export function ortMessage(error: unknown): string {
  const firstLine = (error instanceof Error ? error.message : String(error)).split('\n')[0];
  const failedCheck = / was false\. (.+)$/.exec(firstLine);
  return (failedCheck ? failedCheck[1] : firstLine).slice(0, 300);
}
