/** Whether the disk can hold what a download still lacks, counted before any byte is fetched. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatBytes, formatBytesApart } from '../common/bytes';
import { FicocoError } from '../common/errors';
import { lockIsHeld } from '../common/processLock';
import type { DownloadPlan } from './downloadPlan';
import { copyOf, readPartialRecord, sameFileIn } from './partials';
import { pathInside } from './repoPaths';
import { folderBytes, isFileOfSize, otherPartialFolders, partialFolder } from './store';

/**
 * Refuses a download the disk cannot hold, `free` bytes being free there: it lacks the plan's bytes less those it has
 * already (finished files and parts, its own or those an idle download of another commit gives it), so one stopped by
 * a full disk resumes once the rest fits. What takeFromOtherPartials deletes first counts as free: its own parts that
 * a larger copy replaces, and what a stale download of the same revision does not give.
 */
export function checkDiskRoom(plan: DownloadPlan, free: number): void {
  const { root, repo, revision } = plan.request;
  const partial = partialFolder(root, repo, plan.commit);
  // What takeFromOtherPartials will move over: renamed on the same disk, those bytes take no more room.
  const others = otherPartialFolders(root, repo, plan.commit).flatMap((folder) => {
    const record = lockIsHeld(`${folder}.lock`) ? undefined : readPartialRecord(folder);
    return record ? [{ folder, record }] : [];
  });
  let downloaded = 0;
  let freed = 0;
  /** each file's largest copy, the first of equals: the one takeFromOtherPartials keeps */
  const kept = new Set<string>();
  for (const file of plan.files) {
    // Both folders, each file in turn: another process may rename the unfinished one into place meanwhile.
    const mine = copyOf(partial, file);
    const largest = [mine, ...others.map((other) => sameFileIn(other, file))].reduce(
      (best, copy) => (copy && copy.bytes > (best?.bytes ?? 0) ? copy : best),
      undefined,
    );
    if (largest) kept.add(path.resolve(largest.at));
    if (mine && largest !== mine) freed += bytesFreedByDeleting(mine.at);
    downloaded += isFileOfSize(pathInside(plan.folder, file.path), file.size) ? file.size : (largest?.bytes ?? 0);
  }
  for (const { folder, record } of others)
    if (record.revision === revision)
      freed += folderBytes(folder, (file) => (kept.has(path.resolve(file)) ? 0 : bytesFreedByDeleting(file)));
  const needed = plan.totalBytes - downloaded - freed;
  if (free >= needed) return;
  const [neededText, freeText] = formatBytesApart(needed, free);
  const had = [
    ...(downloaded > 0 ? [`${formatBytes(downloaded)} of ${formatBytes(plan.totalBytes)} are downloaded`] : []),
    ...(freed > 0 ? [`${formatBytes(freed)} of unfinished files it replaces are deleted first`] : []),
  ];
  throw new FicocoError(
    `${repo} needs ${neededText} more on disk${had.length > 0 ? ` (${had.join('; ')})` : ''}, ` +
      `but ${root} has ${freeText} free. Free some space and download again.`,
    'download',
  );
}

/**
 * What deleting `file` frees: nothing while another link keeps its data (a damaged copy's file seeds a download by
 * a link), and at most the blocks it takes (a compressed or sparse file takes fewer than its size).
 */
function bytesFreedByDeleting(file: string): number {
  const stats = fs.lstatSync(file, { throwIfNoEntry: false });
  return stats?.isFile() && stats.nlink === 1 ? Math.min(stats.size, stats.blocks * 512) : 0;
}
