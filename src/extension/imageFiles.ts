/**
 * Image files read for the chat (Explorer, image preview, the Attach dialog, a dropped URI): refused by name, kind
 * and size before their bytes are read, no more than the question has room for, and each read bounded in time — a
 * file on a disconnected remote or network folder must not hold the questions behind it for ever. Free of 'vscode'
 * (the controller passes workspace.fs in) so it is plainly testable.
 */
import {
  MAX_IMAGES_PER_QUESTION,
  MAX_IMAGE_BYTES,
  imageFileTooLarge,
  imageFormatOfFileName,
} from '../common/imageFile';
import type { ImageAttachment } from '../protocol/engine';

/** What reading an image needs of a file system (workspace.fs in the extension). */
export interface ImageFileSystem<Uri> {
  stat(uri: Uri): PromiseLike<{ size: number; isFile: boolean }>;
  readFile(uri: Uri): PromiseLike<Uint8Array>;
}

/** A 32 MiB screenshot read over a slow remote connection (1 MB/s) takes about half of this. */
export const IMAGE_READ_TIMEOUT_MS = 60_000;

export interface ImageFileOptions {
  /** how many more images the question can carry; files past it are refused unread */
  room: number;
  /** how long one file's stat and read may take together (default IMAGE_READ_TIMEOUT_MS) */
  timeoutMs?: number;
}

/**
 * Reads the files, at once, so a batch on a dead remote waits one timeout, not one per file: those taken, in order,
 * base64 as they cross to the engine, and why each other one was refused. The first `room` image files are read.
 */
export async function readImageFiles<Uri>(
  files: readonly { uri: Uri; name: string }[],
  fileSystem: ImageFileSystem<Uri>,
  { room, timeoutMs = IMAGE_READ_TIMEOUT_MS }: ImageFileOptions,
): Promise<{ images: ImageAttachment[]; refused: string[] }> {
  let reading = 0;
  const outcomes = await Promise.all(
    files.map(async ({ uri, name }): Promise<ImageAttachment | string> => {
      if (!imageFormatOfFileName(name)) return `${name} is not an image FiCoCo can read: use PNG, JPEG, WebP or GIF.`;
      if (reading++ >= room)
        return `${name} was not added: a question can carry ${MAX_IMAGES_PER_QUESTION} images; ask about these, then add more.`;
      try {
        const bytes = await withinTime(readImage(uri, name, fileSystem), timeoutMs);
        return typeof bytes === 'string' ? bytes : { name, dataBase64: Buffer.from(bytes).toString('base64') };
      } catch (error) {
        return `Could not read ${name}: ${error instanceof Error ? error.message : String(error)}`;
      }
    }),
  );
  return {
    images: outcomes.filter((outcome): outcome is ImageAttachment => typeof outcome !== 'string'),
    refused: outcomes.filter((outcome): outcome is string => typeof outcome === 'string'),
  };
}

/** The file's bytes, or why it is not read. */
async function readImage<Uri>(uri: Uri, name: string, fileSystem: ImageFileSystem<Uri>): Promise<Uint8Array | string> {
  const { size, isFile } = await fileSystem.stat(uri);
  // A device or pipe named .png (say, a link to /dev/zero in a cloned repository) reads without end.
  if (!isFile) return `${name} is not a regular file; FiCoCo reads image files.`;
  if (size > MAX_IMAGE_BYTES) return imageFileTooLarge(name, size);
  const bytes = await fileSystem.readFile(uri);
  // The file may have grown since its stat.
  return bytes.length > MAX_IMAGE_BYTES ? imageFileTooLarge(name, bytes.length) : bytes;
}

/** `work`'s result, or a rejection once `timeoutMs` has passed (the read itself cannot be cancelled; it is left). */
function withinTime<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `reading it took more than ${timeoutMs / 1000} s (is its folder on a disconnected remote or network ` +
              'drive?); attach it again, or paste the image instead.',
          ),
        ),
      timeoutMs,
    );
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
