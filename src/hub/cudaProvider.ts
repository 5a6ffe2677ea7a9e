/**
 * ONNX Runtime's CUDA provider libraries, which the npm package leaves out: fetched on demand from the
 * Microsoft.ML.OnnxRuntime.Gpu.Linux NuGet package of the same version (as onnxruntime-node's own install
 * script does), checked against the feed's SHA-512, and placed beside libonnxruntime.so, where ORT loads
 * providers from.
 */
import AdmZip from 'adm-zip';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { FicocoError } from '../common/errors';
import { CUDA_PROVIDER_FILES, ORT_LIBRARY } from '../common/cudaRuntime';

export const NUGET_FEED = 'https://api.nuget.org/v3/index.json';
const PACKAGE_ID = 'Microsoft.ML.OnnxRuntime.Gpu.Linux';
const PATH_IN_PACKAGE = 'runtimes/linux-x64/native/';

export interface CudaPackage {
  version: string;
  url: string;
  bytes: number;
  /** base64 SHA-512, as NuGet publishes it */
  sha512: string;
}

/** Finds the NuGet package of `version` on the feed: its download address, size and SHA-512. */
export async function findCudaPackage(version: string, feed = NUGET_FEED, signal?: AbortSignal): Promise<CudaPackage> {
  const index = await getJson<{ resources: { '@id': string; '@type': string }[] }>(feed, signal);
  const resource = (type: string) => index.resources.find((r) => r['@type'] === type)?.['@id'];
  const packageBase = resource('PackageBaseAddress/3.0.0');
  const registrations = resource('RegistrationsBaseUrl/3.6.0') ?? resource('RegistrationsBaseUrl');
  if (!packageBase || !registrations)
    throw new FicocoError(
      `${feed} is not a NuGet v3 feed (no PackageBaseAddress or RegistrationsBaseUrl).`,
      'download',
    );
  const id = PACKAGE_ID.toLowerCase();
  const leaf = await getJson<{ catalogEntry: string | { '@id': string } }>(
    `${registrations.replace(/\/?$/, '/')}${id}/${version}.json`,
    signal,
  );
  const entry = await getJson<{ packageHash?: string; packageHashAlgorithm?: string; packageSize?: number }>(
    typeof leaf.catalogEntry === 'string' ? leaf.catalogEntry : leaf.catalogEntry['@id'],
    signal,
  );
  if (entry.packageHashAlgorithm !== 'SHA512' || !entry.packageHash || !entry.packageSize) {
    throw new FicocoError(
      `${feed} gives no SHA-512 and size for ${PACKAGE_ID} ${version}; the package cannot be verified.`,
      'download',
    );
  }
  return {
    version,
    url: `${packageBase.replace(/\/?$/, '/')}${id}/${version}/${id}.${version}.nupkg`,
    bytes: entry.packageSize,
    sha512: entry.packageHash,
  };
}

export interface InstallOptions {
  signal?: AbortSignal;
  onProgress?: (bytes: number, total: number) => void;
  /**
   * the package's own ORT library folder, when `binaryFolder` is another one: its libonnxruntime.so is copied there too
   */
  copyRuntimeFrom?: string;
}

/**
 * Downloads the package, verifies it and extracts the provider libraries into `binaryFolder` (each written
 * beside its final name first, then renamed, so a failure never leaves half a library there).
 */
export async function installCudaProvider(
  cudaPackage: CudaPackage,
  binaryFolder: string,
  options: InstallOptions = {},
): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-cuda-'));
  try {
    const nupkg = path.join(work, 'package.nupkg');
    const hash = createHash('sha512');
    let received = 0;
    const response = await fetchOk(cudaPackage.url, options.signal);
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        received += chunk.length;
        options.onProgress?.(received, cudaPackage.bytes);
        done(null, chunk);
      },
    });
    await pipeline(
      Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
      counted,
      fs.createWriteStream(nupkg),
      { signal: options.signal },
    );
    const actual = hash.digest('base64');
    if (actual !== cudaPackage.sha512) {
      throw new FicocoError(
        `${cudaPackage.url} failed its checksum (SHA-512 ${actual}, the feed says ${cudaPackage.sha512}); ` +
          `nothing was installed.`,
        'download',
      );
    }
    const zip = new AdmZip(nupkg);
    const libraries = CUDA_PROVIDER_FILES.map((file) => {
      const entry = zip.getEntry(PATH_IN_PACKAGE + file);
      if (!entry)
        throw new FicocoError(
          `${PACKAGE_ID} ${cudaPackage.version} has no ${PATH_IN_PACKAGE + file}; nothing was installed.`,
          'download',
        );
      return { file, bytes: entry.getData() };
    });
    fs.mkdirSync(binaryFolder, { recursive: true });
    const place = (file: string, write: (partial: string) => void) => {
      const target = path.join(binaryFolder, file);
      write(`${target}.partial`);
      fs.renameSync(`${target}.partial`, target);
    };
    if (options.copyRuntimeFrom)
      place(ORT_LIBRARY, (partial) => fs.copyFileSync(path.join(options.copyRuntimeFrom!, ORT_LIBRARY), partial));
    for (const { file, bytes } of libraries)
      place(file, (partial) => fs.writeFileSync(partial, bytes, { mode: 0o755 }));
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function fetchOk(url: string, signal: AbortSignal | undefined): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, { signal });
  } catch (error) {
    if (signal?.aborted) throw new FicocoError('Download cancelled.', 'cancelled');
    throw new FicocoError(
      `${url}: ${error instanceof Error ? error.message : String(error)}${(error as { cause?: Error }).cause ? ` (${(error as { cause: Error }).cause.message})` : ''}.`,
      'download',
    );
  }
  if (!response.ok)
    throw new FicocoError(
      `${url}: HTTP ${response.status}${response.status === 404 ? ' (not found: this ONNX Runtime version may have no CUDA package on the feed)' : ''}.`,
      'download',
    );
  return response;
}

async function getJson<T>(url: string, signal: AbortSignal | undefined): Promise<T> {
  return (await (await fetchOk(url, signal)).json()) as T;
}
