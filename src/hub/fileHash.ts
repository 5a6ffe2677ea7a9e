/** A Hub file's checksum from its bytes on disk: the download, its last check and reused files are all hashed so. */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import type { HubFile } from './downloadPlan';

/** A checksum of the first `bytes` bytes of `file` (SHA-256 for LFS files, git's blob SHA-1 otherwise). */
export async function hashFile(filePath: string, file: HubFile, bytes: number): Promise<Hash> {
  const hash = file.sha256 !== undefined ? createHash('sha256') : createHash('sha1').update(`blob ${file.size}\0`);
  if (bytes > 0)
    for await (const chunk of fs.createReadStream(filePath, { end: bytes - 1 })) hash.update(chunk as Buffer);
  return hash;
}
