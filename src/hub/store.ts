/** Where downloaded models live, and what is there: `<root>/<owner>--<name>/<commit>/` with a manifest each. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readJsonObject } from '../common/boundedFile';
import { FicocoError } from '../common/errors';
import type { HubFile } from './downloadPlan';
import { lockIsHeld } from '../common/processLock';
import { isCommit } from './repoPaths';

/** Written last into a download's folder: its presence means every file arrived and was verified. */
export const DOWNLOAD_MANIFEST = 'ficoco-download.json';
/** Where unfinished downloads wait to resume: `<root>/.partial/<owner>--<name>--<commit>/` and its `.lock`. */
const PARTIAL = '.partial';

export interface DownloadManifest {
  repo: string;
  revision: string;
  commit: string;
  endpoint: string;
  files: HubFile[];
  completedAt: string;
}

export interface StoredModel extends DownloadManifest {
  folder: string;
  /** what deleting it frees: its files and what the engine cached beside them (quantized weights, a tuning) */
  bytes: number;
}

export function modelFolder(root: string, repo: string, commit: string): string {
  return path.join(root, repoFolderName(repo), commitFolderName(commit));
}

export function partialFolder(root: string, repo: string, commit: string): string {
  return path.join(root, PARTIAL, `${repoFolderName(repo)}--${commitFolderName(commit)}`);
}

/** A commit as a folder name: 40 hex digits, nothing else (a server's answer ends up here). */
function commitFolderName(commit: string): string {
  if (!isCommit(commit))
    throw new FicocoError(`"${commit}" is not a commit (40 hex digits); nothing was written.`, 'download');
  return commit;
}

/** owner--name, after checking `repo` is a Hub model name (it becomes a folder name). */
export function repoFolderName(repo: string): string {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo) || repo.includes('..')) {
    throw new FicocoError(
      `"${repo}" is not a Hub model name; expected owner/name, e.g. llava-hf/llava-1.5-7b-hf.`,
      'input',
    );
  }
  return repo.replace('/', '--');
}

/** Every complete download under `root`, newest first. */
export function listStoredModels(root: string): StoredModel[] {
  const models: StoredModel[] = [];
  for (const repoDir of readDirs(root)) {
    if (repoDir === PARTIAL) continue;
    for (const commitDir of readDirs(path.join(root, repoDir))) {
      const folder = path.join(root, repoDir, commitDir);
      const manifest = readManifest(folder);
      if (manifest) models.push({ ...manifest, folder, bytes: folderBytes(folder) });
    }
  }
  return models.sort((a, b) => b.completedAt.localeCompare(a.completedAt));
}

/** Deletes a downloaded model (and the repository's folder once empty); refuses anything outside `root`. */
export function deleteStoredModel(root: string, folder: string): void {
  const relative = path.relative(path.resolve(root), path.resolve(folder));
  if (
    relative.startsWith('..') ||
    path.isAbsolute(relative) ||
    relative.split(path.sep).length !== 2 ||
    !readManifest(folder)
  ) {
    throw new FicocoError(`${folder} is not a model FiCoCo downloaded into ${root}; it was left alone.`, 'input');
  }
  fs.rmSync(folder, { recursive: true, force: true });
  const repoDir = path.dirname(folder);
  if (fs.readdirSync(repoDir).length === 0) fs.rmdirSync(repoDir);
}

/** A download that stopped before it was complete: its verified files and `.incomplete` parts wait to resume. */
export interface PartialDownload {
  /** `<root>/.partial/<owner>--<name>--<commit>` */
  folder: string;
  bytes: number;
  /** another process (a VS Code window, a CLI run) is downloading it now */
  inUse: boolean;
}

export function listPartialDownloads(root: string): PartialDownload[] {
  const parent = path.join(root, PARTIAL);
  return readDirs(parent).map((name) => {
    const folder = path.join(parent, name);
    return { folder, bytes: folderBytes(folder), inUse: lockIsHeld(`${folder}.lock`) };
  });
}

/** The unfinished downloads of `repo` at commits other than `commit`. */
export function otherPartialFolders(root: string, repo: string, commit: string): string[] {
  const prefix = `${repoFolderName(repo)}--`;
  return readDirs(path.join(root, PARTIAL))
    .filter((name) => {
      const other = name.slice(prefix.length);
      return name.startsWith(prefix) && isCommit(other) && other !== commit;
    })
    .map((name) => path.join(root, PARTIAL, name));
}

/** Removes an unfinished download (it starts over next time); refuses one that is running or is not under `root`. */
export function deletePartialDownload(root: string, folder: string): void {
  const partial = listPartialDownloads(root).find((p) => path.resolve(p.folder) === path.resolve(folder));
  if (!partial)
    throw new FicocoError(`${folder} is not an unfinished download in ${root}; it was left alone.`, 'input');
  if (partial.inUse)
    throw new FicocoError(`${folder} is downloading in another window or process now; it was left alone.`, 'input');
  fs.rmSync(partial.folder, { recursive: true, force: true });
  fs.rmSync(`${partial.folder}.lock`, { force: true });
}

/**
 * Bytes of the files in `folder`, each as `bytesOf` counts it (its size unless told); a file or the folder gone
 * meanwhile (a download running there renamed it) is 0.
 */
export function folderBytes(folder: string, bytesOf: (file: string) => number = fileSize): number {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(folder, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  // Files and the folders below, not links: what a link points at is not freed with the folder.
  return entries.reduce((sum, entry) => {
    const at = path.join(folder, entry.name);
    if (entry.isDirectory()) return sum + folderBytes(at, bytesOf);
    return sum + (entry.isFile() ? bytesOf(at) : 0);
  }, 0);
}

function fileSize(file: string): number {
  return fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0;
}

/**
 * Whether `folder` holds a complete download: a manifest this version wrote, and every file it lists there at its size
 * (one cut short or deleted since makes it a download to mend).
 */
export function isStoredModel(folder: string): boolean {
  const manifest = readManifest(folder);
  return (
    manifest !== undefined && manifest.files.every((file) => isFileOfSize(path.join(folder, file.path), file.size))
  );
}

/** A folder's download manifest; undefined where there is none, or one this version did not write. */
function readManifest(folder: string): DownloadManifest | undefined {
  let manifest: unknown;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(folder, DOWNLOAD_MANIFEST), 'utf8'));
  } catch {
    return undefined;
  }
  return isManifest(manifest) ? manifest : undefined;
}

function isManifest(value: unknown): value is DownloadManifest {
  if (typeof value !== 'object' || value === null) return false;
  const manifest = value as Record<string, unknown>;
  const strings = ['repo', 'revision', 'commit', 'endpoint', 'completedAt'].every(
    (key) => typeof manifest[key] === 'string',
  );
  return strings && isHubFiles(manifest.files);
}

/** Whether `value` lists files as a manifest or a partial download's record does. */
export function isHubFiles(value: unknown): value is HubFile[] {
  return (
    Array.isArray(value) &&
    value.every(
      (file: unknown) =>
        typeof file === 'object' &&
        file !== null &&
        typeof (file as HubFile).path === 'string' &&
        Number.isSafeInteger((file as HubFile).size),
    )
  );
}

function readDirs(folder: string): string[] {
  try {
    return fs
      .readdirSync(folder, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
  } catch {
    return [];
  }
}

/**
 * What a folder lacks to be a model FiCoCo can load (empty when nothing is missing), as the engine looks for it: the
 * settings files, a chat template wherever transformers keeps one, and weights whose every shard is there. Links are
 * followed (a Hugging Face cache snapshot is made of them), so a link whose blob is gone counts as missing.
 */
export function missingModelFiles(folder: string): string[] {
  if (!fs.statSync(folder, { throwIfNoEntry: false })?.isDirectory()) return ['the folder itself'];
  const isFile = (name: string) => fs.statSync(path.join(folder, name), { throwIfNoEntry: false })?.isFile() === true;
  const missing = ['config.json', 'tokenizer.json', 'preprocessor_config.json'].filter((file) => !isFile(file));
  if (!hasChatTemplate(folder, isFile))
    missing.push('chat template (chat_template in tokenizer_config.json, chat_template.json or chat_template.jinja)');
  missing.push(...missingWeights(folder, isFile));
  return missing;
}

/** Where the engine finds a chat template: chat_template.jinja, else the chat_template field of either JSON file. */
function hasChatTemplate(folder: string, isFile: (name: string) => boolean): boolean {
  if (isFile('chat_template.jinja')) return true;
  return ['chat_template.json', 'tokenizer_config.json'].some(
    (file) =>
      isFile(file) && readJsonObject(path.join(folder, file), MAX_CHECKED_JSON_BYTES)?.['chat_template'] !== undefined,
  );
}

/** The weights the engine would open and cannot: the shards the index names, else any *.safetensors file at all. */
function missingWeights(folder: string, isFile: (name: string) => boolean): string[] {
  const index = 'model.safetensors.index.json';
  if (isFile(index)) {
    const weightMap = readJsonObject(path.join(folder, index), MAX_CHECKED_JSON_BYTES)?.['weight_map'];
    if (typeof weightMap !== 'object' || weightMap === null) return [`weight_map in ${index}`];
    const shards = [...new Set(Object.values(weightMap as Record<string, unknown>))];
    return shards
      .filter((shard) => typeof shard !== 'string' || !isFile(shard))
      .map((shard) => `${String(shard)} (named in ${index})`);
  }
  let names: string[];
  try {
    names = fs.readdirSync(folder);
  } catch {
    names = [];
  }
  return names.some((name) => name.endsWith('.safetensors') && isFile(name)) ? [] : ['*.safetensors weights'];
}

/** The most a settings file read by this check may hold (the engine reads each again, with its own bounds). */
const MAX_CHECKED_JSON_BYTES = 16 * 2 ** 20;

/** Whether `file` is a regular file (not a link) of `size` bytes. */
export function isFileOfSize(file: string, size: number): boolean {
  const stats = fs.lstatSync(file, { throwIfNoEntry: false });
  return stats !== undefined && stats.isFile() && stats.size === size;
}

/** Bytes free on the disk that holds `folder` (or its nearest existing parent). */
export function freeBytes(folder: string): number {
  let existing = path.resolve(folder);
  while (!fs.existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  const stats = fs.statfsSync(existing);
  return stats.bavail * stats.bsize;
}
