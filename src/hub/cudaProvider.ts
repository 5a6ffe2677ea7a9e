/**
 * ONNX Runtime's CUDA provider libraries, which the npm package leaves out: fetched on demand from the
 * Microsoft.ML.OnnxRuntime.Gpu.Linux NuGet package of the same version (as onnxruntime-node's own install
 * script does), checked against the feed's SHA-512, and placed beside libonnxruntime.so, where ORT loads
 * providers from. The feed is asked as a Hub is (hubHttp.ts): every answer bounded in time and bytes.
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
import {
  ANSWER_MS,
  IDLE_MS,
  MAX_API_BYTES,
  type RequestWatch,
  fetchWatched,
  watchRequest,
  watchedBody,
} from './hubHttp';

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

export interface FeedOptions {
  /** the feed's service index (default nuget.org's) */
  feed?: string;
  /** stops the lookup (a 'cancelled' error) */
  signal?: AbortSignal;
  /** how long the feed may send nothing before a request is given up (default 60 s, as the Hub's) */
  idleTimeoutMs?: number;
  /** how long the whole lookup may take (default 120 s, as asking the Hub) */
  answerTimeoutMs?: number;
}

/**
 * Finds the NuGet package of `version` on the feed: its download address, size and SHA-512. The feed is not trusted:
 * each answer is bounded in bytes, and the lookup in time.
 */
export async function findCudaPackage(version: string, options: FeedOptions = {}): Promise<CudaPackage> {
  const { feed = NUGET_FEED, signal } = options;
  const answerMs = options.answerTimeoutMs ?? ANSWER_MS;
  const answerBy = Date.now() + answerMs;
  const getJson = async <T>(url: string): Promise<T> => {
    const { host, pathname } = new URL(url);
    const watch = watchRequest(host, options.idleTimeoutMs ?? IDLE_MS);
    watch.deadline(answerBy - Date.now(), `the feed took more than ${answerMs / 1000} s to answer`);
    const response = await fetchOk(url, watch, signal);
    const what = `${host}${pathname}`;
    return (await watchedBody(response, watch, { resumeAt: 0, maxBytes: MAX_API_BYTES, what }).json()) as T;
  };
  const id = PACKAGE_ID.toLowerCase();
  try {
    const index = await getJson<{ resources: { '@id': string; '@type': string }[] }>(feed);
    const resource = (type: string) => index.resources.find((r) => r['@type'] === type)?.['@id'];
    const packageBase = resource('PackageBaseAddress/3.0.0');
    const registrations = resource('RegistrationsBaseUrl/3.6.0') ?? resource('RegistrationsBaseUrl');
    if (!packageBase || !registrations)
      throw new FicocoError(
        `${feed} is not a NuGet v3 feed (no PackageBaseAddress or RegistrationsBaseUrl).`,
        'download',
      );
    const leaf = await getJson<{ catalogEntry: string | { '@id': string } }>(
      `${registrations.replace(/\/?$/, '/')}${id}/${version}.json`,
    );
    const entry = await getJson<{ packageHash?: string; packageHashAlgorithm?: string; packageSize?: number }>(
      typeof leaf.catalogEntry === 'string' ? leaf.catalogEntry : leaf.catalogEntry['@id'],
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
  } catch (error) {
    throw feedError(error, signal, `Looking up ${PACKAGE_ID} ${version} on ${feed}`, 'try again later.');
  }
}

export interface InstallOptions {
  signal?: AbortSignal;
  onProgress?: (bytes: number, total: number) => void;
  /**
   * the package's own ORT library folder, when `binaryFolder` is another one: its libonnxruntime.so is copied there too
   */
  copyRuntimeFrom?: string;
  /** how long the server may send nothing before the download is given up (default 60 s, as the Hub's) */
  idleTimeoutMs?: number;
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
    const actual = await downloadPackage(cudaPackage, nupkg, options);
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

/**
 * Downloads the package into `file` and returns its SHA-512 (base64). The feed is not trusted: the download stops at
 * the size the feed declared, and when the server sends nothing for the idle time.
 */
async function downloadPackage(cudaPackage: CudaPackage, file: string, options: InstallOptions): Promise<string> {
  const { url, bytes } = cudaPackage;
  const hash = createHash('sha512');
  let received = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      received += chunk.length;
      options.onProgress?.(received, bytes);
      done(null, chunk);
    },
  });
  try {
    const watch = watchRequest(new URL(url).host, options.idleTimeoutMs ?? IDLE_MS);
    const response = await fetchOk(url, watch, options.signal);
    const body = watchedBody(response, watch, { resumeAt: 0, maxBytes: bytes, what: url }).body;
    await pipeline(Readable.fromWeb(body as WebReadableStream<Uint8Array>), counted, fs.createWriteStream(file), {
      signal: options.signal,
    });
  } catch (error) {
    throw feedError(
      error,
      options.signal,
      `Downloading ${PACKAGE_ID} ${cudaPackage.version} (${bytes} bytes, the feed says)`,
      'nothing was installed; try again later.',
    );
  }
  return hash.digest('base64');
}

/** Sends a request under `watch`'s clocks; an HTTP error status is refused with its body unread. */
async function fetchOk(url: string, watch: RequestWatch, signal: AbortSignal | undefined): Promise<Response> {
  const response = await fetchWatched(url, {}, watch, [signal]);
  if (!response.ok) {
    watch.stop();
    void response.body?.cancel();
    throw new FicocoError(
      `${url}: HTTP ${response.status}${response.status === 404 ? ' (not found: this ONNX Runtime version may have no CUDA package on the feed)' : ''}.`,
      'download',
    );
  }
  return response;
}

/** A failure of `doing` as one line ending with what to do (`then`); a cancel as a 'cancelled' error. */
function feedError(error: unknown, signal: AbortSignal | undefined, doing: string, then: string): FicocoError {
  if (signal?.aborted) return new FicocoError(`${doing} was cancelled.`, 'cancelled');
  if (error instanceof FicocoError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const cause = (error as { cause?: { message?: string } }).cause?.message;
  return new FicocoError(`${doing} failed: ${message}${cause ? ` (${cause})` : ''}; ${then}`, 'download');
}
