/**
 * A download writes only inside the models folder: its folders are refused where a link on the way leads elsewhere,
 * and its files are appended to never through a link.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FicocoError } from '../common/errors';

/** Appending to a file, never through a link (where the platform can say so: O_NOFOLLOW is not Windows'). */
export const APPEND_NOT_THROUGH_LINK =
  fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | (fs.constants.O_NOFOLLOW ?? 0);

/**
 * Makes `folder` (inside `root`) and refuses it unless it is where its path says: a link on the way (`.partial` made a
 * link to elsewhere) would take the download's writes out of the models folder.
 */
export function makeRealFolder(root: string, folder: string): void {
  fs.mkdirSync(folder, { recursive: true });
  const real = fs.realpathSync(folder);
  if (real !== path.join(fs.realpathSync(root), path.relative(root, folder)))
    throw new FicocoError(
      `${folder} is a link to ${real}: downloads are written only inside ${root} itself. Remove the link and ` +
        'download again.',
      'download',
    );
}

/** Makes the folders above `file` in `partial`, replacing anything on the way that is not a folder (a link). */
export function makeFoldersInside(partial: string, file: string): void {
  let folder = partial;
  for (const segment of file.split('/').slice(0, -1)) {
    folder = path.join(folder, segment);
    if (fs.lstatSync(folder, { throwIfNoEntry: false })?.isDirectory()) continue;
    fs.rmSync(folder, { force: true });
    fs.mkdirSync(folder);
  }
}
