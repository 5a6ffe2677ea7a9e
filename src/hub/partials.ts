/**
 * Unfinished downloads put to use: a damaged earlier copy of the model seeds its new download, and the unfinished
 * download of another commit (a branch that moved since) gives it every file that did not change, as its record
 * (`ficoco-partial.json`) tells.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readJsonObject } from '../common/boundedFile';
import { acquireDownloadLock } from './downloadLock';
import type { DownloadPlan, HubFile } from './downloadPlan';
import { hashesToListed, listedChecksum } from './fileHash';
import { INCOMPLETE_SUFFIX, pathInside } from './repoPaths';
import { makeFoldersInside, makeRealFolder } from './safeWrites';
import { isFileOfSize, isHubFiles, otherPartialFolders } from './store';

/** In an unfinished download's folder until it is complete: what it was asked for (a PartialRecord). */
const PARTIAL_RECORD = 'ficoco-partial.json';
/** The most a record read back may hold: it lists the model's files with their checksums. */
const MAX_PARTIAL_RECORD_BYTES = 16 * 2 ** 20;

/** What an unfinished download is of, so a later download of another commit can tell which of its files it can use. */
export interface PartialRecord {
  /** the revision asked for: a branch that names another commit now makes this download stale */
  revision: string;
  files: HubFile[];
}

/** Records what the unfinished download in `partial` is of; never written through a link. */
export function writePartialRecord(partial: string, record: PartialRecord): void {
  const file = path.join(partial, PARTIAL_RECORD);
  fs.rmSync(file, { recursive: true, force: true });
  fs.writeFileSync(file, JSON.stringify(record) + '\n', { flag: 'wx' });
}

/** What the unfinished download in `partial` is of; undefined where it has no record (an earlier version's). */
export function readPartialRecord(partial: string): PartialRecord | undefined {
  const record = readJsonObject(path.join(partial, PARTIAL_RECORD), MAX_PARTIAL_RECORD_BYTES);
  return typeof record?.revision === 'string' && isHubFiles(record.files)
    ? { revision: record.revision, files: record.files }
    : undefined;
}

/** Removes the record once every file is verified: the folder becomes the model's. */
export function removePartialRecord(partial: string): void {
  fs.rmSync(path.join(partial, PARTIAL_RECORD), { force: true });
}

/**
 * A damaged earlier copy stays usable while it is mended: its files of the right size are linked into the unfinished
 * download (and verified again with the rest), and it is replaced only once that is whole. A copy that is a link is
 * refused, naming it.
 */
export function seedFromDamaged(plan: DownloadPlan, partial: string): void {
  makeRealFolder(plan.request.root, plan.folder);
  makeRealFolder(plan.request.root, partial);
  for (const file of plan.files) {
    const sound = pathInside(plan.folder, file.path);
    if (!isFileOfSize(sound, file.size)) continue;
    makeFoldersInside(partial, file.path);
    try {
      fs.linkSync(sound, pathInside(partial, file.path));
    } catch {
      // A disk without hard links (FAT32): the file is fetched again.
    }
  }
}

/**
 * Unfinished downloads of the repository's other commits (not running) give this one every file they hold with the
 * same path and checksum, where they hold more of it: a branch that moved since a pause fetches only what changed. One
 * asked for this same revision is then removed, since the revision names this commit now. One paused by 0.1.0, which
 * recorded neither, gives its finished files whose bytes hash to the checksum, and stays.
 */
export async function takeFromOtherPartials(plan: DownloadPlan, partial: string): Promise<void> {
  const { root, repo, revision } = plan.request;
  for (const other of otherPartialFolders(root, repo, plan.commit)) {
    // One running elsewhere (or whose lock cannot be taken) keeps its files.
    const lock = await acquireDownloadLock(`${other}.lock`, repo, { wait: false }).catch(() => undefined);
    if (!lock) continue;
    try {
      const record = readPartialRecord(other);
      for (const file of plan.files) {
        const mine = copyOf(partial, file);
        if (mine?.bytes === file.size) continue;
        const theirs = record ? sameFileIn({ folder: other, record }, file) : await sameFinishedFileIn(other, file);
        if (!theirs || theirs.bytes <= (mine?.bytes ?? 0)) continue;
        makeFoldersInside(partial, file.path);
        if (mine) fs.rmSync(mine.at);
        fs.renameSync(theirs.at, path.join(partial, path.relative(other, theirs.at)));
      }
      if (record?.revision === revision) fs.rmSync(other, { recursive: true, force: true });
    } finally {
      lock.release();
    }
  }
}

/** An unfinished download of another commit of the repository, with what it was asked for. */
export interface OtherPartial {
  folder: string;
  record: PartialRecord;
}

/** `file` as `other` holds it, where `other` was asked for a file of the same path, size and checksum. */
export function sameFileIn(other: OtherPartial, file: HubFile): { at: string; bytes: number } | undefined {
  const same = other.record.files.some(
    (was) => was.path === file.path && was.size === file.size && listedChecksum(was) === listedChecksum(file),
  );
  return same ? copyOf(other.folder, file) : undefined;
}

/**
 * `file` finished in `other`, an unfinished download without a record, where its bytes hash to `file`'s checksum; only
 * a file of the same path and size is hashed. Its parts are not taken: no checksum tells them apart until they are whole.
 */
async function sameFinishedFileIn(other: string, file: HubFile): Promise<{ at: string; bytes: number } | undefined> {
  const finished = pathInside(other, file.path);
  if (!isFileOfSize(finished, file.size)) return undefined;
  return (await hashesToListed(finished, file)) ? { at: finished, bytes: file.size } : undefined;
}

/** `file` as an unfinished download in `partial` holds it: finished, or its part so far; undefined where neither. */
export function copyOf(partial: string, file: HubFile): { at: string; bytes: number } | undefined {
  const finished = pathInside(partial, file.path);
  if (isFileOfSize(finished, file.size)) return { at: finished, bytes: file.size };
  const part = fs.lstatSync(finished + INCOMPLETE_SUFFIX, { throwIfNoEntry: false });
  return part?.isFile() ? { at: finished + INCOMPLETE_SUFFIX, bytes: Math.min(part.size, file.size) } : undefined;
}
