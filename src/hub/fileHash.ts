/** A Hub file's checksum from its bytes on disk: the download, its last check and reused files are all hashed so. */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import type { HubFile } from './downloadPlan';

/** The checksum the Hub lists for `file`: SHA-256 for an LFS file, git's blob SHA-1 otherwise. */
export const listedChecksum = (file: HubFile): string | undefined => file.sha256 ?? file.gitSha1;

/** Whether the first `file.size` bytes at `filePath` hash to the checksum the Hub lists for `file`. */
export async function hashesToListed(filePath: string, file: HubFile): Promise<boolean> {
  return (await hashFile(filePath, file, file.size)).digest('hex') === listedChecksum(file);
}

/** A checksum of the first `bytes` bytes of `file` (SHA-256 for LFS files, git's blob SHA-1 otherwise). */
export async function hashFile(filePath: string, file: HubFile, bytes: number): Promise<Hash> {
  const hash = file.sha256 !== undefined ? createHash('sha256') : createHash('sha1').update(`blob ${file.size}\0`);
  if (bytes > 0)
    for await (const chunk of fs.createReadStream(filePath, { end: bytes - 1 })) hash.update(chunk as Buffer);
  return hash;
}
