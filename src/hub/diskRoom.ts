/** Whether the disk can hold what a download still lacks, counted before any byte is fetched. */
import { formatBytes, formatBytesApart } from '../common/bytes';
import { FicocoError } from '../common/errors';
import { lockIsHeld } from '../common/processLock';
import type { DownloadPlan } from './downloadPlan';
import { copyOf, readPartialRecord, sameFileIn } from './partials';
import { pathInside } from './repoPaths';
import { isFileOfSize, otherPartialFolders, partialFolder } from './store';

/**
 * Refuses a download the disk cannot hold, `free` bytes being free there: it lacks the plan's bytes less those it has
 * already (finished files and parts, its own or those an idle download of another commit gives it), so one stopped by
 * a full disk resumes once the rest fits.
 */
export function checkDiskRoom(plan: DownloadPlan, free: number): void {
  const { root, repo } = plan.request;
  const partial = partialFolder(root, repo, plan.commit);
  // What takeFromOtherPartials will move over: renamed on the same disk, those bytes take no more room.
  const others = otherPartialFolders(root, repo, plan.commit).flatMap((folder) => {
    const record = lockIsHeld(`${folder}.lock`) ? undefined : readPartialRecord(folder);
    return record ? [{ folder, record }] : [];
  });
  // Both folders, each file in turn: another process may rename the unfinished one into place meanwhile.
  const downloaded = plan.files.reduce((sum, file) => {
    if (isFileOfSize(pathInside(plan.folder, file.path), file.size)) return sum + file.size;
    const copies = [copyOf(partial, file), ...others.map((other) => sameFileIn(other, file))];
    return sum + Math.max(0, ...copies.map((copy) => copy?.bytes ?? 0));
  }, 0);
  const needed = plan.totalBytes - downloaded;
  if (free >= needed) return;
  const [neededText, freeText] = formatBytesApart(needed, free);
  throw new FicocoError(
    `${repo} needs ${neededText} more on disk` +
      `${downloaded > 0 ? ` (${formatBytes(downloaded)} of ${formatBytes(plan.totalBytes)} are downloaded)` : ''}, ` +
      `but ${root} has ${freeText} free. Free some space and download again.`,
    'download',
  );
}
