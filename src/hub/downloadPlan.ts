/**
 * What a model download will fetch: the revision resolved to a commit, the repository's files with their sizes and
 * checksums, and a copy already complete (downloaded before, or in the Hugging Face cache). The server's listing is
 * not trusted: its paths are checked before they name anything, and a file it lists without a checksum is refused.
 */
import * as path from 'node:path';
import { listFiles, modelInfo } from '@huggingface/hub';
import { FicocoError } from '../common/errors';
import { findSnapshotInHfCache } from './hfCache';
import { asDownloadError, checkHubEndpoint, hubOptions } from './hubHttp';
import { checkCommit, checkDownloadPath, checkListedPath, isCommit } from './repoPaths';
import { isStoredModel, modelFolder, repoFolderName } from './store';

/** Files a folder can do without (the engine has defaults or finds the template elsewhere): a preset may list them. */
const OPTIONAL_FILE =
  /^(generation_config|special_tokens_map|added_tokens|processor_config|chat_template)\.json$|^chat_template\.jinja$/;

/** Whether a model folder can do without this file (OPTIONAL_FILE), by its name. */
export function isOptionalModelFile(file: string): boolean {
  return OPTIONAL_FILE.test(path.posix.basename(file));
}

/** The files a LLaVA folder needs, at its top (weights as safetensors only; no .bin, no other formats). */
const MODEL_FILE =
  /^(config|generation_config|preprocessor_config|processor_config|tokenizer_config|special_tokens_map|added_tokens|tokenizer|chat_template)\.json$|^chat_template\.jinja$|^model(-\d+-of-\d+)?\.safetensors$|^model\.safetensors\.index\.json$/;

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
  /** sent only to the endpoint's own origin, and only over https (or to this machine) */
  accessToken?: string;
  /** how long the server may send nothing before a request is given up and retried (default 60 s) */
  idleTimeoutMs?: number;
  /** how long asking the server may take in all: the revision and the listing, or one file's probe (default 120 s) */
  answerTimeoutMs?: number;
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
  /** an access token was given but not sent: the endpoint is plain http to another machine */
  tokenWithheld?: boolean;
}

/** Entries a repository's listing may hold: a model has tens of files. */
const MAX_LISTED_ENTRIES = 100_000;
/** Pages a listing may take (the Hub's hold up to 1,000 entries each). */
const MAX_LISTING_PAGES = 1_000;

/**
 * Refuses wanted paths that one disk would hold as one (they differ only in case, as on Windows and macOS) or where one
 * is the folder of another: either would overwrite or fail the other on every try.
 */
function checkNoCollisions(paths: readonly string[], where: string): void {
  const files = new Map<string, string>(); // as one disk may see them → as listed
  const folders = new Map<string, string>(); // a folder as one disk may see it → a file in it
  for (const file of new Set(paths)) {
    const key = file.normalize('NFC').toLowerCase();
    // The folders above the file, each from the one before (not joined again from every segment).
    const above: string[] = [];
    for (const part of key.split('/').slice(0, -1)) above.push(above.length > 0 ? `${above.at(-1)}/${part}` : part);
    const clash = files.get(key) ?? folders.get(key) ?? above.map((folder) => files.get(folder)).find(Boolean);
    if (clash !== undefined)
      throw new FicocoError(
        `${where} lists both ${clash} and ${file}, which one folder cannot hold apart; the repository is not ` +
          'one FiCoCo can download.',
        'download',
      );
    files.set(key, file);
    for (const folder of above) folders.set(folder, file);
  }
}

/**
 * Resolves the revision to a commit, lists the files with their sizes and checksums, and finds an existing copy;
 * `signal` stops the asking (a 'cancelled' error).
 */
export async function planDownload(
  request: ModelRequest,
  options: { signal?: AbortSignal } = {},
): Promise<DownloadPlan> {
  repoFolderName(request.repo);
  checkHubEndpoint(request.endpoint);
  const { signal } = options;
  const hub = hubOptions(request, signal);
  const where = `${request.repo} at ${request.revision} on ${hub.hubUrl}`;
  const cancelled = () => new FicocoError(`Asking ${hub.hubUrl} about ${request.repo} was cancelled.`, 'cancelled');
  const hubCall = <T>(call: () => Promise<T>) =>
    call().then(
      (answer) => {
        // A cancel that came as the answer did still stops the asking.
        if (signal?.aborted) throw cancelled();
        return answer;
      },
      (error: unknown) => {
        throw signal?.aborted ? cancelled() : asDownloadError(error, where);
      },
    );
  const commit = await hubCall(async () => {
    if (isCommit(request.revision)) return request.revision;
    const info = await modelInfo({ name: request.repo, revision: request.revision, additionalFields: ['sha'], ...hub });
    return checkCommit(info.sha, where);
  });
  const listed = new Map<string, ListedFile>();
  let entries = 0;
  await hubCall(async () => {
    const listing = { ...hub, fetch: listingPages(hub.fetch) };
    // The engine reads the files at the top of a model's folder: copies further down (checkpoint-100/) are not its.
    for await (const entry of listFiles({ repo: request.repo, revision: commit, recursive: false, ...listing })) {
      if (++entries > MAX_LISTED_ENTRIES)
        throw new FicocoError(
          `${where} lists more than ${MAX_LISTED_ENTRIES} entries; that is not a model.`,
          'download',
        );
      checkListedPath(entry.path, where);
      if (entry.type === 'file') listed.set(entry.path, entry);
    }
  });
  const wanted = request.files ?? [...listed.keys()].filter((file) => MODEL_FILE.test(file));
  for (const file of wanted) checkDownloadPath(file, where);
  checkNoCollisions(wanted, where);
  const missing = wanted.filter((file) => !listed.has(file) && !OPTIONAL_FILE.test(path.posix.basename(file)));
  if (missing.length > 0)
    throw new FicocoError(
      `${where} has no ${missing.join(', ')}: the model preset and the repository disagree.`,
      'download',
    );
  if (!wanted.some((file) => file.endsWith('.safetensors'))) {
    throw new FicocoError(`${where} has no .safetensors weights; FiCoCo loads safetensors only.`, 'download');
  }
  const files = wanted.flatMap((file) => {
    const entry = listed.get(file);
    return entry ? [verifiableFile(entry, where)] : [];
  });
  const folder = modelFolder(request.root, request.repo, commit);
  const plan: DownloadPlan = {
    request,
    commit,
    files,
    totalBytes: files.reduce((sum, f) => sum + f.size, 0),
    folder,
    ...(request.accessToken && !hub.accessToken ? { tokenWithheld: true } : {}),
  };
  if (isStoredModel(folder)) return { ...plan, existing: 'downloaded' };
  const cached = findSnapshotInHfCache(request.repo, commit, files);
  return cached ? { ...plan, folder: cached, existing: 'hf-cache' } : plan;
}

/**
 * A listing's fetch that refuses a page already read (a `next` link back to itself) and more than MAX_LISTING_PAGES
 * pages (fresh `next` links to empty pages): a listing that pages on without end is not a repository's.
 */
function listingPages(fetchPage: typeof fetch): typeof fetch {
  const read = new Set<string>();
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input);
    if (read.has(url.href)) throw new Error(`${url.host} sent ${url.pathname} again as its next page`);
    read.add(url.href);
    if (read.size > MAX_LISTING_PAGES) throw new Error(`${url.host} sent more than ${MAX_LISTING_PAGES} listing pages`);
    return fetchPage(input, init);
  };
}

/** A file as a listing gives it. */
type ListedFile = { path: string; size: number; oid?: string; lfs?: { oid: string } };

/**
 * A listed file with the checksum it will be verified by: SHA-256 for LFS files, git's blob SHA-1 otherwise; none is
 * refused.
 */
function verifiableFile(entry: ListedFile, where: string): HubFile {
  if (!Number.isSafeInteger(entry.size) || entry.size < 0)
    throw new FicocoError(
      `${where}: the server lists ${entry.path} with the size ${JSON.stringify(entry.size)}; refusing it.`,
      'download',
    );
  if (entry.lfs && /^[0-9a-f]{64}$/.test(entry.lfs.oid))
    return { path: entry.path, size: entry.size, sha256: entry.lfs.oid };
  if (!entry.lfs && entry.oid !== undefined && /^[0-9a-f]{40}$/.test(entry.oid))
    return { path: entry.path, size: entry.size, gitSha1: entry.oid };
  throw new FicocoError(
    `${where}: the server lists ${entry.path} without a valid checksum (a 64-hex SHA-256 for LFS files, ` +
      `a 40-hex git SHA-1 otherwise), so it could not be verified; FiCoCo downloads only files it can verify.`,
    'download',
  );
}

/** How the plan's files are verified, for the consent dialog: "3 files by SHA-256 (Git LFS), 6 by git's blob SHA-1". */
export function verificationSummary(plan: DownloadPlan): string {
  const lfs = plan.files.filter((file) => file.sha256 !== undefined).length;
  const git = plan.files.length - lfs;
  const parts = [lfs > 0 ? `${lfs} by SHA-256 (Git LFS)` : '', git > 0 ? `${git} by git's blob SHA-1` : ''].filter(
    Boolean,
  );
  return `Every file is checked against the checksum the Hub lists: ${parts.join(', ')}.`;
}
