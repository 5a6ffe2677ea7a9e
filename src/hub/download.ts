/**
 * Model downloads from the Hugging Face Hub (or any server with its API) through @huggingface/hub.
 *
 * A download lands in `<root>/.partial/<owner>--<name>--<commit>/`, each file as `<file>.incomplete` until
 * its bytes are complete and its checksum matches the Hub's (SHA-256 of LFS files, the git blob SHA-1 of
 * small ones). Only when every file is verified does one rename move the folder to `<root>/<owner>--<name>/<commit>/`,
 * so a cut-off download never looks complete, and the next attempt resumes each file where it stopped. A branch that
 * moved since takes what did not change from its old commit's unfinished download (ficoco-partial.json says what that
 * was asked for), which is then removed.
 *
 * The server is not trusted: its paths and commit are checked before they name anything on disk, a file it lists
 * without a checksum is refused, the access token goes only to its origin over https, and a lock file keeps a second
 * process (another VS Code window) from writing the same download.
 *
 * Around it: downloadPlan.ts lists what to fetch, hubHttp.ts asks the server, partials.ts reuses unfinished downloads,
 * diskRoom.ts checks the disk first, safeWrites.ts keeps every write inside the models folder.
 */
import type { Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { setTimeout as delay } from 'node:timers/promises';
import { downloadFile } from '@huggingface/hub';
import { FicocoError } from '../common/errors';
import type { LockOwner } from '../common/processLock';
import { diskError } from './diskError';
import { acquireDownloadLock } from './downloadLock';
import type { DownloadPlan, HubFile } from './downloadPlan';
import { hashFile, hashesToListed, listedChecksum } from './fileHash';
import { asDownloadError, hubOptions } from './hubHttp';
import { removePartialRecord, seedFromDamaged, takeFromOtherPartials, writePartialRecord } from './partials';
import { INCOMPLETE_SUFFIX, pathInside } from './repoPaths';
import { APPEND_NOT_THROUGH_LINK, makeFoldersInside, makeRealFolder } from './safeWrites';
import { DOWNLOAD_MANIFEST, DownloadManifest, isFileOfSize, isStoredModel, partialFolder } from './store';

export interface DownloadProgress {
  file: string;
  /**
   * bytes of the whole model on disk and verified or being written; never fewer than before (bytes a dropped connection
   * lost on their way to the disk count until they are fetched again)
   */
  bytesDone: number;
  bytesTotal: number;
  /** bytes received from the server in this call (a resumed download had the rest on disk): what a rate is of */
  bytesFetched: number;
  /**
   * bytes of the files reached so far that were on disk when this call began (finished files, and the parts it
   * resumed); bytes fetched twice after a dropped connection do not make it smaller
   */
  bytesOnDiskBefore: number;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  /**
   * called at least once for every file once this call downloads (a file it finds on disk too); never when another
   * process completed the model first, which this call then only finds
   */
  onProgress?: (progress: DownloadProgress) => void;
  /** attempts per file after a dropped connection (each resumes where the last stopped) */
  retries?: number;
  /** milliseconds before the first retry; doubles each time */
  retryDelayMs?: number;
  /** when another process is downloading the same model: wait for it, or fail at once saying so (default) */
  whenBusy?: 'wait' | 'fail';
  /** called when this download starts waiting for another process's */
  onWait?: (owner: LockOwner | undefined) => void;
}

/**
 * Downloads what the plan lists (nothing when it found a copy) and returns the complete model folder. Holds the
 * download's lock meanwhile, and checks every file on disk once more before the manifest says the model is complete.
 */
export async function downloadModel(plan: DownloadPlan, options: DownloadOptions = {}): Promise<string> {
  if (plan.existing) return plan.folder;
  const { request, commit } = plan;
  const partial = partialFolder(request.root, request.repo, commit);
  makeRealFolder(request.root, path.dirname(partial));
  // A repository folder that is a link is refused now, not after every file was fetched.
  makeRealFolder(request.root, path.dirname(plan.folder));
  const lock = await acquireDownloadLock(`${partial}.lock`, `${request.repo}@${commit.slice(0, 7)}`, {
    wait: options.whenBusy === 'wait',
    signal: options.signal,
    onWait: options.onWait,
  });
  try {
    // The other process may have finished it while this one waited.
    if (isStoredModel(plan.folder)) return plan.folder;
    // No unfinished download, but an earlier copy (damaged: it was not stored whole): that copy seeds one.
    if (!fs.existsSync(partial) && fs.existsSync(plan.folder)) seedFromDamaged(plan, partial);
    makeRealFolder(request.root, partial);
    try {
      writePartialRecord(partial, { revision: request.revision, files: plan.files });
    } catch (error) {
      throw diskError(error, partial) ?? error;
    }
    await takeFromOtherPartials(plan, partial);
    let verifiedBytes = 0;
    let fetchedBytes = 0;
    let doneBytes = 0;
    let onDiskBeforeBytes = 0;
    for (const file of plan.files) {
      let fileReported = false;
      const report = (fileBytes: number, fetched = 0) => {
        // A file's first report comes before any of its bytes are fetched: it is what was on disk.
        if (!fileReported) onDiskBeforeBytes += fileBytes;
        fileReported = true;
        fetchedBytes += fetched;
        // A retry starts from the bytes on disk, fewer than were counted when a dropped connection lost some in flight.
        doneBytes = Math.max(doneBytes, verifiedBytes + fileBytes);
        options.onProgress?.({
          file: file.path,
          bytesDone: doneBytes,
          bytesTotal: plan.totalBytes,
          bytesFetched: fetchedBytes,
          bytesOnDiskBefore: onDiskBeforeBytes,
        });
      };
      // A lock taken over stops the transfer at once (two writers of one file), and says so.
      const signal = AbortSignal.any([lock.signal, ...(options.signal ? [options.signal] : [])]);
      await downloadOneFile(plan, file, partial, report, { ...options, signal }).catch((error: unknown) => {
        lock.assertHeld();
        throw error;
      });
      lock.assertHeld();
      verifiedBytes += file.size;
    }
    await verifyOnDisk(plan, partial);
    lock.assertHeld();
    removePartialRecord(partial);
    const manifest: DownloadManifest = {
      repo: request.repo,
      revision: request.revision,
      commit,
      endpoint: request.endpoint,
      files: plan.files,
      completedAt: new Date().toISOString(),
    };
    const manifestFile = path.join(partial, DOWNLOAD_MANIFEST);
    try {
      fs.writeFileSync(manifestFile, JSON.stringify(manifest, null, 2) + '\n');
    } catch (error) {
      throw diskError(error, manifestFile) ?? error;
    }
    makeRealFolder(request.root, path.dirname(plan.folder));
    // An earlier download of this commit whose manifest is damaged (not listed, not loadable as ours) is replaced.
    fs.rmSync(plan.folder, { recursive: true, force: true });
    fs.renameSync(partial, plan.folder);
    return plan.folder;
  } finally {
    lock.release();
  }
}

/**
 * Every file of the finished download hashed again from disk: what the manifest vouches for is what is there. Every
 * file that changed is deleted before the error, so the next download fetches them all again at once.
 */
async function verifyOnDisk(plan: DownloadPlan, partial: string): Promise<void> {
  const changed: string[] = [];
  for (const file of plan.files) {
    const target = pathInside(partial, file.path);
    // Bytes past the size (a second writer's) would not change the hash of the first `size`.
    if (!(await hashesToListed(target, file)) || fs.statSync(target).size !== file.size) {
      fs.rmSync(target, { force: true });
      changed.push(file.path);
    }
  }
  if (changed.length > 0)
    throw new FicocoError(
      `${changed.join(', ')} of ${plan.request.repo} changed on disk after ` +
        `${changed.length === 1 ? 'it was verified; it was' : 'they were verified; they were'} deleted. ` +
        `Download the model again.`,
      'download',
    );
}

/**
 * One file into the unfinished download's folder `partial`: resumes its `.incomplete`, retries dropped connections,
 * verifies, then renames.
 */
async function downloadOneFile(
  plan: DownloadPlan,
  file: HubFile,
  partial: string,
  report: (fileBytes: number, fetched?: number) => void,
  options: DownloadOptions,
): Promise<void> {
  makeFoldersInside(partial, file.path);
  const target = pathInside(partial, file.path);
  // A finished file is kept at its size only: one cut short (a crash before its bytes reached the disk) comes again.
  if (isFileOfSize(target, file.size)) return report(file.size);
  // Anything else there goes, a link above all: writing through it would leave the models folder.
  fs.rmSync(target, { recursive: true, force: true });
  const incomplete = target + INCOMPLETE_SUFFIX;
  if (fs.lstatSync(incomplete, { throwIfNoEntry: false })?.isFile() === false)
    fs.rmSync(incomplete, { recursive: true, force: true });
  // Made now: an empty file needs no bytes from the server, yet is verified and renamed like the rest.
  try {
    fs.closeSync(fs.openSync(incomplete, APPEND_NOT_THROUGH_LINK));
  } catch (error) {
    throw diskError(error, incomplete) ?? error;
  }
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
      const cancelled = () =>
        new FicocoError(
          `Download of ${plan.request.repo} cancelled; ${file.path} stopped at ${checksum!.bytes} of ` +
            `${file.size} bytes and resumes next time.`,
          'cancelled',
        );
      if (options.signal?.aborted) throw cancelled();
      const diskProblem = diskError(error, incomplete);
      if (diskProblem) throw diskProblem;
      if (error instanceof FicocoError || attempt >= retries)
        throw asDownloadError(error, `${file.path} of ${plan.request.repo}`);
      await delay((options.retryDelayMs ?? 500) * 2 ** attempt, undefined, { signal: options.signal }).catch(() => {
        throw cancelled();
      });
    }
  }
  const actual = checksum.hash.digest('hex');
  const expected = listedChecksum(file);
  if (expected !== undefined && actual !== expected) {
    fs.rmSync(incomplete, { force: true });
    throw new FicocoError(
      `${file.path} of ${plan.request.repo} failed its checksum (${file.sha256 ? 'SHA-256' : 'git SHA-1'} ` +
        `${actual}, the Hub says ${expected}); the file was deleted, download it again.`,
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
  report: (fileBytes: number, fetched: number) => void,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { request, commit } = plan;
  const blob = await downloadFile({
    repo: request.repo,
    path: file.path,
    revision: commit,
    ...hubOptions(request, signal, true),
    // The file's bytes from its own URL: a xet store's links (auth, reconstruction JSON) are more answers to trust.
    xet: false,
  });
  if (!blob) throw new FicocoError(`${file.path} is not in ${request.repo} at ${commit} (404).`, 'download');
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (checksum.bytes + chunk.length > file.size)
        return done(new Error(`the server sent more than the ${file.size} bytes of ${file.path}`));
      checksum.hash.update(chunk);
      checksum.bytes += chunk.length;
      report(checksum.bytes, chunk.length);
      done(null, chunk);
    },
  });
  const remainder = Readable.fromWeb(blob.slice(offset).stream() as WebReadableStream<Uint8Array>);
  const fd = fs.openSync(incomplete, APPEND_NOT_THROUGH_LINK);
  await pipeline(remainder, counted, fs.createWriteStream(incomplete, { fd }), { signal });
  if (checksum.bytes !== file.size) throw new Error(`the connection ended at ${checksum.bytes} of ${file.size} bytes`);
}
