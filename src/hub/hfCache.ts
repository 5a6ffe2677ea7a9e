/**
 * Finds a model already in the Hugging Face cache (as huggingface_hub and transformers leave it), to use it in place.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { HubFile } from './downloadPlan';

/** HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (huggingface_hub's own order). */
export function hfHubCacheFolder(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  const home = env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
  return path.join(home, 'hub');
}

/** A file looked for in a snapshot: by name alone where its size is not known (a preset, offline). */
export type CachedFile = Pick<HubFile, 'path'> & Partial<Pick<HubFile, 'size' | 'sha256'>>;

/**
 * `models--owner--name/snapshots/<commit>` when every file is there (at its size, where given), and each LFS file links
 * to the blob named for its SHA-256; else undefined.
 */
export function findSnapshotInHfCache(
  repo: string,
  commit: string,
  files: readonly CachedFile[],
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const snapshot = path.join(hfHubCacheFolder(env), `models--${repo.replace('/', '--')}`, 'snapshots', commit);
  // Snapshot entries are symlinks into blobs/; statSync follows them, so a dangling link counts as missing.
  const complete = files.every((file) => {
    try {
      const entry = path.join(snapshot, ...file.path.split('/'));
      const stat = fs.statSync(entry);
      if (!stat.isFile() || (file.size !== undefined && stat.size !== file.size)) return false;
      // A blob is named for its checksum; a cache without links (Windows without them) has sizes only to go by.
      return (
        file.sha256 === undefined ||
        !fs.lstatSync(entry).isSymbolicLink() ||
        path.basename(fs.realpathSync(entry)) === file.sha256
      );
    } catch {
      return false;
    }
  });
  return complete ? snapshot : undefined;
}
