import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ElemType } from '../graph/builder';

import { ProviderName, ProviderSetting } from './providerNames';

export { PROVIDERS, PROVIDER_SETTINGS, type ProviderName, type ProviderSetting } from './providerNames';

/** The providers to try, best first; CPU always ends the list. */
export function providerCandidates(setting: ProviderSetting, platform: NodeJS.Platform, cudaLibraryPresent: boolean): ProviderName[] {
  if (setting === 'cpu') return ['cpu'];
  if (setting !== 'auto') return [setting, 'cpu'];
  if (platform === 'win32') return ['dml', 'cpu'];
  if (platform === 'darwin') return ['coreml', 'cpu'];
  return cudaLibraryPresent ? ['cuda', 'cpu'] : ['cpu'];
}

/** Compute precision: 'auto' keeps half precision on GPU providers and float32 on the CPU. */
export type Precision = 'auto' | 'float32' | 'float16';

export function computeTypeFor(provider: ProviderName, precision: Precision = 'auto'): ElemType {
  if (precision !== 'auto') return precision === 'float16' ? ElemType.float16 : ElemType.float32;
  return provider === 'cpu' || provider === 'coreml' ? ElemType.float32 : ElemType.float16;
}

export interface SessionFactoryOptions {
  /** the one real folder all weight files live in (external data resolves against it) */
  weightsFolder: string;
  provider: ProviderSetting;
  precision?: Precision;
  /** intra-op threads; ORT's default (one per physical core) when absent */
  threads?: number;
}

/**
 * Creates ORT sessions on the best provider that loads. The first session settles the provider:
 * when the requested one fails, the engine falls back to CPU and remembers why.
 */
export class SessionFactory {
  private settled: ProviderName | undefined;
  fallbackReason: string | undefined;

  constructor(private readonly options: SessionFactoryOptions) {}

  get provider(): ProviderName | undefined {
    return this.settled;
  }

  /** The compute type of the settled provider's graphs (and of its KV cache). */
  get computeType(): ElemType {
    return computeTypeFor(this.settled ?? 'cpu', this.options.precision);
  }

  /** `graphFor` builds the graph for a compute type (it differs between CPU and GPU providers). */
  async create(graphFor: (computeType: ElemType) => Uint8Array): Promise<ort.InferenceSession> {
    if (this.settled) return this.open(graphFor(this.computeType), this.settled);
    const failures: string[] = [];
    for (const provider of providerCandidates(this.options.provider, process.platform, cudaLibraryPresent())) {
      try {
        const session = await this.open(graphFor(computeTypeFor(provider, this.options.precision)), provider);
        this.settled = provider;
        if (failures.length > 0) this.fallbackReason = failures.join('; ');
        return session;
      } catch (error) {
        if (provider === 'cpu') throw error;
        failures.push(`${provider} could not be used (${firstLine(error)}), running on CPU instead`);
      }
    }
    throw new Error('unreachable: the CPU provider is always a candidate');
  }

  private open(bytes: Uint8Array, provider: ProviderName): Promise<ort.InferenceSession> {
    return ort.InferenceSession.create(bytes, {
      executionProviders: [provider],
      graphOptimizationLevel: 'all',
      // A GPU provider that fails to load is reported once by us, not as ORT's log noise.
      ...(provider === 'cpu' ? {} : { logSeverityLevel: 4 as const }),
      ...(this.options.threads ? { intraOpNumThreads: this.options.threads } : {}),
      extra: {
        session: {
          model_external_initializers_file_folder_path: this.options.weightsFolder,
          // Each segment has its own thread pool; idle pools must not spin while the next segment runs.
          intra_op: { allow_spinning: '0' },
        },
      },
    });
  }
}

function cudaLibraryPresent(): boolean {
  const binding = path.dirname(require.resolve('onnxruntime-node'));
  const candidates = [path.join(binding, '..', 'bin', 'napi-v6', 'linux', process.arch, 'libonnxruntime_providers_cuda.so')];
  return candidates.some((file) => fs.existsSync(file));
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0].slice(0, 300);
}
