/**
 * Model downloads from the Hugging Face Hub (or any server with its API) through @huggingface/hub.
 *
 * A download lands in `<root>/.partial/<owner>--<name>--<commit>/`, each file as `<file>.incomplete` until
 * its bytes are complete and its checksum matches the Hub's (SHA-256 of LFS files, the git blob SHA-1 of
 * small ones). Only when every file is verified does one rename move the folder to `<root>/<owner>--<name>/<commit>/`,
 * so a cut-off download never looks complete, and the next attempt resumes each file where it stopped.
 */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { downloadFile, listFiles, modelInfo } from '@huggingface/hub';
import { FicocoError } from '../common/errors';
import { findSnapshotInHfCache } from './hfCache';
import { DOWNLOAD_MANIFEST, DownloadManifest, modelFolder, partialFolder, repoFolderName } from './store';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

/** Files a folder can do without (the engine has defaults or finds the template elsewhere): a preset may list them. */
const OPTIONAL_FILE = /^(generation_config|special_tokens_map|added_tokens|processor_config|chat_template)\.json$|^chat_template\.jinja$/;

/** The files a LLaVA folder needs (weights as safetensors only; no .bin, no other formats). */
const MODEL_FILE = /^(config|generation_config|preprocessor_config|processor_config|tokenizer_config|special_tokens_map|added_tokens|tokenizer|chat_template)\.json$|^chat_template\.jinja$|^model(-\d+-of-\d+)?\.safetensors$|^model\.safetensors\.index\.json$/;

export interface HubFile {
  path: string;
  size: number;
  /** SHA-256 of an LFS file's content */
  sha256?: string;
  /** git blob SHA-1 of a file stored in git itself */
  gitSha1?: string;
}

export interface ModelRequest {
  /** owner/name */
  repo: string;
  /** branch, tag or commit */
  revision: string;
  /** files to fetch; absent: every file a LLaVA folder needs that the repository has */
  files?: readonly string[];
  /** Hub base URL, e.g. https://huggingface.co or a mirror */
  endpoint: string;
  /** folder that holds downloaded models */
  root: string;
  accessToken?: string;
}

export interface DownloadPlan {
  request: ModelRequest;
  /** the commit the revision resolved to */
  commit: string;
  files: HubFile[];
  totalBytes: number;
  /** where the model will be (or already is) */
  folder: string;
  /** already complete: downloaded before, or found in the Hugging Face cache */
  existing?: 'downloaded' | 'hf-cache';
}

export interface DownloadProgress {
  file: string;
  /** bytes of the whole model on disk and verified or being written */
  bytesDone: number;
  bytesTotal: number;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  /** attempts per file after a dropped connection (each resumes where the last stopped) */
  retries?: number;
  /** milliseconds before the first retry; doubles each time */
  retryDelayMs?: number;
}

/** Resolves the revision to a commit, lists the files with their sizes and checksums, and finds an existing copy. */
export async function planDownload(request: ModelRequest): Promise<DownloadPlan> {
  repoFolderName(request.repo);
  const hub = hubOptions(request);
  const where = `${request.repo} at ${request.revision} on ${hub.hubUrl}`;
  const commit = await hubCall(where, async () => {
    if (/^[0-9a-f]{40}$/.test(request.revision)) return request.revision;
    const info = await modelInfo({ name: request.repo, revision: request.revision, additionalFields: ['sha'], ...hub });
    if (typeof info.sha !== 'string') throw new FicocoError(`The Hub did not say which commit ${where} is.`, 'download');
    return info.sha;
  });
  const listed = new Map<string, HubFile>();
  await hubCall(where, async () => {
    for await (const entry of listFiles({ repo: request.repo, revision: commit, recursive: true, ...hub })) {
      if (entry.type !== 'file') continue;
      listed.set(entry.path, { path: entry.path, size: entry.size, ...(entry.lfs ? { sha256: entry.lfs.oid } : { gitSha1: entry.oid }) });
    }
  });
  const wanted = request.files ?? [...listed.keys()].filter((file) => MODEL_FILE.test(path.posix.basename(file)));
  const missing = wanted.filter((file) => !listed.has(file) && !OPTIONAL_FILE.test(path.posix.basename(file)));
  if (missing.length > 0) throw new FicocoError(`${where} has no ${missing.join(', ')}: the model preset and the repository disagree.`, 'download');
  if (!wanted.some((file) => file.endsWith('.safetensors'))) {
    throw new FicocoError(`${where} has no .safetensors weights; FiCoCo loads safetensors only.`, 'download');
  }
  const files = wanted.flatMap((file) => listed.get(file) ?? []);
  const folder = modelFolder(request.root, request.repo, commit);
  const plan: DownloadPlan = { request, commit, files, totalBytes: files.reduce((sum, f) => sum + f.size, 0), folder };
  if (fs.existsSync(path.join(folder, DOWNLOAD_MANIFEST))) return { ...plan, existing: 'downloaded' };
  const cached = findSnapshotInHfCache(request.repo, commit, files);
  return cached ? { ...plan, folder: cached, existing: 'hf-cache' } : plan;
}

/** Downloads what the plan lists (nothing when it found a copy) and returns the complete model folder. */
export async function downloadModel(plan: DownloadPlan, options: DownloadOptions = {}): Promise<string> {
  if (plan.existing) return plan.folder;
  const { request, commit } = plan;
  const partial = partialFolder(request.root, request.repo, commit);
  fs.mkdirSync(partial, { recursive: true });
  let verifiedBytes = 0;
  for (const file of plan.files) {
    const report = (fileBytes: number) => options.onProgress?.({ file: file.path, bytesDone: verifiedBytes + fileBytes, bytesTotal: plan.totalBytes });
    await downloadOneFile(plan, file, path.join(partial, ...file.path.split('/')), report, options);
    verifiedBytes += file.size;
  }
  const manifest: DownloadManifest = { repo: request.repo, revision: request.revision, commit, endpoint: request.endpoint, files: plan.files, completedAt: new Date().toISOString() };
  fs.writeFileSync(path.join(partial, DOWNLOAD_MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
  fs.mkdirSync(path.dirname(plan.folder), { recursive: true });
  fs.renameSync(partial, plan.folder);
  return plan.folder;
}

/** One file into `target`: resumes `target.incomplete`, retries dropped connections, verifies, then renames. */
async function downloadOneFile(plan: DownloadPlan, file: HubFile, target: string, report: (fileBytes: number) => void, options: DownloadOptions): Promise<void> {
  if (fs.existsSync(target)) return report(file.size);
  const incomplete = `${target}.incomplete`;
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const retries = options.retries ?? 5;
  let checksum: { hash: Hash; bytes: number } | undefined;
  for (let attempt = 0; ; attempt++) {
    let onDisk = fs.existsSync(incomplete) ? fs.statSync(incomplete).size : 0;
    if (onDisk > file.size) {
      fs.truncateSync(incomplete, 0);
      onDisk = 0;
    }
    // The running checksum must cover exactly the bytes on disk; after a failed write it is rebuilt from them.
    if (checksum?.bytes !== onDisk) checksum = { hash: await hashFile(incomplete, file, onDisk), bytes: onDisk };
    report(onDisk);
    try {
      if (onDisk < file.size) await appendRemainder(plan, file, incomplete, onDisk, checksum, report, options.signal);
      break;
    } catch (error) {
      if (options.signal?.aborted) throw new FicocoError(`Download of ${plan.request.repo} cancelled; ${file.path} stopped at ${checksum.bytes} of ${file.size} bytes and resumes next time.`, 'cancelled');
      if (error instanceof FicocoError || attempt >= retries) throw asDownloadError(error, `${file.path} of ${plan.request.repo}`);
      await sleep((options.retryDelayMs ?? 500) * 2 ** attempt, options.signal);
    }
  }
  const actual = checksum.hash.digest('hex');
  const expected = file.sha256 ?? file.gitSha1;
  if (expected !== undefined && actual !== expected) {
    fs.rmSync(incomplete, { force: true });
    throw new FicocoError(
      `${file.path} of ${plan.request.repo} failed its checksum (${file.sha256 ? 'SHA-256' : 'git SHA-1'} ${actual}, the Hub says ${expected}); the file was deleted, download it again.`,
      'download',
    );
  }
  fs.renameSync(incomplete, target);
}

async function appendRemainder(
  plan: DownloadPlan,
  file: HubFile,
  incomplete: string,
  offset: number,
  checksum: { hash: Hash; bytes: number },
  report: (fileBytes: number) => void,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { request, commit } = plan;
  const blob = await downloadFile({
    repo: request.repo,
    path: file.path,
    revision: commit,
    ...hubOptions(request),
    fetch: (input, init) => fetch(input, { ...init, signal }),
  });
  if (!blob) throw new FicocoError(`${file.path} is not in ${request.repo} at ${commit} (404).`, 'download');
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (checksum.bytes + chunk.length > file.size) return done(new Error(`the server sent more than the ${file.size} bytes of ${file.path}`));
      checksum.hash.update(chunk);
      checksum.bytes += chunk.length;
      report(checksum.bytes);
      done(null, chunk);
    },
  });
  const remainder = Readable.fromWeb(blob.slice(offset).stream() as WebReadableStream<Uint8Array>);
  await pipeline(remainder, counted, fs.createWriteStream(incomplete, { flags: 'a' }), { signal });
  if (checksum.bytes !== file.size) throw new Error(`the connection ended at ${checksum.bytes} of ${file.size} bytes`);
}

/** A checksum of the first `bytes` bytes of `file` (SHA-256 for LFS files, git's blob SHA-1 otherwise). */
async function hashFile(filePath: string, file: HubFile, bytes: number): Promise<Hash> {
  const hash = file.sha256 !== undefined ? createHash('sha256') : createHash('sha1').update(`blob ${file.size}\0`);
  if (bytes > 0) for await (const chunk of fs.createReadStream(filePath, { end: bytes - 1 })) hash.update(chunk as Buffer);
  return hash;
}

/** What every @huggingface/hub call of a request takes: the endpoint without a trailing slash, and the token. */
function hubOptions(request: ModelRequest): { hubUrl: string; accessToken?: string } {
  return { hubUrl: request.endpoint.replace(/\/+$/, ''), ...(request.accessToken ? { accessToken: request.accessToken } : {}) };
}

async function hubCall<T>(where: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw asDownloadError(error, where);
  }
}

/** The Hub library's errors (HTTP status in `statusCode`) and network failures as one actionable message. */
function asDownloadError(error: unknown, what: string): FicocoError {
  if (error instanceof FicocoError) return error;
  const status = (error as { statusCode?: unknown }).statusCode;
  const message = error instanceof Error ? error.message : String(error);
  if (status === 404) return new FicocoError(`${what}: not found (404). Check the repository name, the revision and the Hub endpoint.`, 'download');
  if (status === 401 || status === 403) return new FicocoError(`${what}: access denied (${status}). The repository may be gated or private; accept its licence on the Hub and give an access token.`, 'download');
  const cause = (error as { cause?: { message?: string } }).cause?.message;
  return new FicocoError(`${what}: ${message}${cause ? ` (${cause})` : ''}.`, 'download');
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new FicocoError('Download cancelled.', 'cancelled'));
    }, { once: true });
  });
}
