/**
 * The chat kept on disk, so that a window reload (or a VS Code restart) finds it where it was. `conversation.json`
 * holds the turns' text, answers and stats; each image is a file of its own beside it, named by the SHA-256 of its
 * bytes, so a follow-up about the same screenshot stores it once. The folder is the workspace's storage (the
 * extension's global storage in a window without a folder). Both are bounded: the newest MAX_STORED_TURNS turns, and
 * the newest images up to MAX_STORED_IMAGE_BYTES (older ones come back by name, "image not kept").
 *
 * What is read back is treated as hostile, since it may have been edited or cut short: one parser (the webview
 * protocol's turns), file names of one shape only, resolved inside the folder, sizes checked on the open file before
 * reading, links and other non-files refused, each image's hash and header checked. A store that does not parse gives
 * an empty chat and one log line; a store folder that is a link is refused. Saves are asynchronous, so a large chat
 * with images does not stall the extension host, one after another, so an earlier save never lands after a later one,
 * and atomic (a temporary file renamed); deactivate waits for the last, so a reload right after an answer keeps it.
 * They happen only after a change: a window that changed nothing does not write over another window's chat, nor over
 * one it could not read. Free of 'vscode' so it is plainly testable.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IMAGE_FORMATS, MAX_IMAGES_PER_QUESTION, MAX_IMAGE_BYTES, checkImageFile } from '../common/imageFile';
import { writeFileAtomicallyAsync } from '../common/atomicFile';
import { fieldReaders } from '../protocol/fields';
import { MessageError, type Reply, type Turn, type TurnImage, parseTurn } from '../protocol/webview';
import { type ImageInput, type TurnRecord, turnImage } from './conversation';
import { decodedLength } from '../protocol/engine';

/** The turns kept: older ones leave the store (and the chat, at the next reload). */
export const MAX_STORED_TURNS = 100;
/** The image bytes kept per conversation: a 1080p PNG screenshot is 0.2–2 MB, so dozens fit. */
export const MAX_STORED_IMAGE_BYTES = 64 * 1024 * 1024;
/** The largest conversation.json written or read: a tiled screenshot's reduction overlay is the bulk of a turn. */
export const MAX_STORED_TEXT_BYTES = 16 * 1024 * 1024;
/** How long streamed text waits before it is saved (a turn asked or finished is saved at once). */
export const STREAMING_SAVE_DELAY_MS = 1000;

export interface StoreLimits {
  turns: number;
  imageBytes: number;
  textBytes: number;
}

export const STORE_LIMITS: StoreLimits = {
  turns: MAX_STORED_TURNS,
  imageBytes: MAX_STORED_IMAGE_BYTES,
  textBytes: MAX_STORED_TEXT_BYTES,
};

export const INDEX_FILE = 'conversation.json';
const VERSION = 1;
/** Only names of this shape are read or deleted: the image's SHA-256 and its format. */
const IMAGE_FILE = new RegExp(`^([0-9a-f]{64})\\.(${IMAGE_FORMATS.join('|')})$`);

/** An image's file in the store: its name (SHA-256 and format) and size in bytes. */
interface SavedImage {
  file: string;
  size: number;
}

/** A turn as conversation.json has it: its images by name, and the file of each (null: not kept). */
interface SavedTurn {
  turn: Turn;
  files: (string | null)[];
}

const { record, array } = fieldReaders((message) => new MessageError(message));

export class ConversationStore {
  private timer: NodeJS.Timeout | undefined;
  /** each image's file name and size, worked out once (an image is the same object in every turn that asks about it) */
  private readonly files = new WeakMap<ImageInput, SavedImage>();
  /** the file of each image read back, kept by the next saves where its turn did not get all its images back */
  private readonly restoredFiles = new WeakMap<TurnImage, SavedImage>();
  /** a save that fails is logged once, until one succeeds */
  private failing = false;
  /** changed since the last save: a window that changed nothing (another window's chat, one that did not load) saves nothing */
  private dirty = false;
  /** each turn's JSON (without previews) as last written, by id: a streamed answer's saves write one turn again */
  private readonly turnJson = new Map<string, string>();
  /** the saves in order: each starts once the one before it ended, so an earlier one never lands last */
  private saving: Promise<void> = Promise.resolve();
  /** a save is queued behind `saving` and has not started: it will write the changes made meanwhile too */
  private saveQueued = false;

  /**
   * @param folder the store's own folder: created by the first save, deleted with everything in it by a save of no turns
   * @param records the conversation's turns now, read at each save
   */
  constructor(
    readonly folder: string,
    private readonly records: () => readonly Readonly<TurnRecord>[],
    private readonly log: { warn(line: string): void },
    private readonly limits: StoreLimits = STORE_LIMITS,
    private readonly delayMs = STREAMING_SAVE_DELAY_MS,
  ) {}

  /**
   * The conversation changed: saved now (`now`: a turn asked or finished, the chat cleared) or soon (streamed text).
   * `turnId`: the one turn that changed, whose text is written again while the others' is reused; none: any may have.
   */
  changed(now: boolean, turnId?: string): void {
    this.dirty = true;
    if (turnId === undefined) this.turnJson.clear();
    else this.turnJson.delete(turnId);
    if (now) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.delayMs);
  }

  /**
   * Saves what is there now, after any save in flight; resolves once it is on disk (or failed). Never rejects: a
   * failure is logged.
   */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.saveQueued) {
      this.saveQueued = true;
      this.saving = this.saving.then(() => {
        this.saveQueued = false;
        return this.saveIfChanged();
      });
    }
    return this.saving;
  }

  private async saveIfChanged(): Promise<void> {
    if (!this.dirty) return;
    // A change made while this save runs marks the store again, and its own save follows this one.
    this.dirty = false;
    try {
      await this.save(this.records());
      this.failing = false;
    } catch (error) {
      this.dirty = true;
      if (!this.failing) this.log.warn(`could not save the chat in ${this.folder}: ${messageOf(error)}`);
      this.failing = true;
    }
  }

  /**
   * Writes the turns: new image files first, then the index, then the image files no longer used are deleted. The
   * turns' text is taken before the first wait, so answers streaming meanwhile do not tear it.
   */
  async save(records: readonly Readonly<TurnRecord>[]): Promise<void> {
    if (records.length === 0) {
      await fs.promises.rm(this.folder, { recursive: true, force: true });
      return;
    }
    const { entries, sources } = this.entries(records.slice(-this.limits.turns));
    const written = this.fitText(entries);
    await fs.promises.mkdir(this.folder, { recursive: true });
    await checkRealFolder(this.folder);
    const used = new Set(written.flatMap(({ files }) => files.filter((file): file is string => file !== null)));
    for (const file of used) {
      const { size, input } = sources.get(file)!;
      const target = path.join(this.folder, file);
      // An image read back is on disk already; a new one is decoded again only to be written.
      if (input && (await sizeOf(target)) !== size)
        await writeFileAtomicallyAsync(target, Buffer.from(input.dataBase64, 'base64'));
    }
    const index = `{"version":${VERSION},"turns":[${written.map(({ json }) => json).join(',')}]}`;
    await writeFileAtomicallyAsync(path.join(this.folder, INDEX_FILE), Buffer.from(index));
    for (const name of await fs.promises.readdir(this.folder))
      if (IMAGE_FILE.test(name) && !used.has(name)) await fs.promises.rm(path.join(this.folder, name), { force: true });
  }

  /** The saved turns as the conversation takes them back; [] when there are none or they cannot be read. */
  async load(): Promise<TurnRecord[]> {
    try {
      if (fs.existsSync(this.folder)) await checkRealFolder(this.folder);
      const text = await readBounded(path.join(this.folder, INDEX_FILE), this.limits.textBytes);
      if (text === undefined) return [];
      const saved = parseStore(JSON.parse(text.toString('utf8'))).slice(-this.limits.turns);
      return await this.withImages(saved);
    } catch (error) {
      this.log.warn(`the chat saved in ${this.folder} could not be read, so it starts empty: ${messageOf(error)}`);
      return [];
    }
  }

  /**
   * Each turn as written, newest images first up to the limit, and where each file's bytes come from: a new image's
   * input, or none for an image read back (its file is there).
   */
  private entries(records: readonly Readonly<TurnRecord>[]): {
    entries: { json: string; files: (string | null)[] }[];
    sources: Map<string, { size: number; input?: ImageInput }>;
  } {
    const sources = new Map<string, { size: number; input?: ImageInput }>();
    let total = 0;
    const newestFirst = [...records].reverse().map(({ turn, inputs }) => {
      const files = turn.images.map((image, i) => {
        const input = inputs[i];
        const saved = input ? this.imageFile(input) : this.restoredFiles.get(image);
        if (!saved) return null;
        if (!sources.has(saved.file)) {
          if (total + saved.size > this.limits.imageBytes) return null;
          total += saved.size;
          sources.set(saved.file, { size: saved.size, ...(input && { input }) });
        }
        return saved.file;
      });
      // The previews are made again from the files when the chat is read back.
      let json = this.turnJson.get(turn.id);
      if (json === undefined) {
        json = JSON.stringify({ ...turn, images: turn.images.map(({ name }) => ({ name })) });
        this.turnJson.set(turn.id, json);
      }
      return { json: `{"turn":${json},"files":${JSON.stringify(files)}}`, files };
    });
    return { entries: newestFirst.reverse(), sources };
  }

  /** The newest entries whose text fits the limit. */
  private fitText<T extends { json: string }>(entries: T[]): T[] {
    let room = this.limits.textBytes - 64;
    let first = entries.length;
    while (first > 0 && Buffer.byteLength(entries[first - 1].json) + 1 <= room)
      room -= Buffer.byteLength(entries[--first].json) + 1;
    return entries.slice(first);
  }

  /** An image's file name (its SHA-256) and size, worked out once; its bytes are not kept. */
  private imageFile(input: ImageInput): SavedImage {
    let image = this.files.get(input);
    if (!image) {
      const bytes = Buffer.from(input.dataBase64, 'base64');
      image = { file: `${sha256(bytes)}.${input.format}`, size: bytes.length };
      this.files.set(input, image);
    }
    return image;
  }

  /**
   * The turns with their images read back, newest first up to the limit. An image that is gone, too large, not a
   * plain file or not what its name says is not kept; a turn keeps its images for a follow-up only when all are there.
   */
  private async withImages(saved: SavedTurn[]): Promise<TurnRecord[]> {
    const read = new Map<string, ImageInput | undefined>();
    let total = 0;
    const unreadable: string[] = [];
    for (const { turn, files } of [...saved].reverse()) {
      for (const [i, file] of files.entries()) {
        if (file === null || read.has(file)) continue;
        const image = await this.readImage(file, turn.images[i].name, this.limits.imageBytes - total);
        if (typeof image === 'string') unreadable.push(image);
        else total += image.bytes;
        read.set(file, typeof image === 'string' ? undefined : image.input);
      }
    }
    if (unreadable.length > 0)
      this.log.warn(`${unreadable.length} image(s) of the chat saved in ${this.folder} not kept: ${unreadable[0]}`);
    // One input and one preview per file and name, shared by every turn that asked about it, as in a live chat.
    const shared = new Map<string, { input: ImageInput; image: TurnImage }>();
    const sharedImage = (file: string, name: string) => {
      const key = `${file}/${name}`;
      let entry = shared.get(key);
      const input = read.get(file);
      if (!entry && input) {
        const named = { ...input, name };
        const savedImage = { file, size: decodedLength(named.dataBase64) };
        entry = { input: named, image: turnImage(named) };
        shared.set(key, entry);
        // Its file is known without hashing it again, and kept by later saves where its turn cannot be asked again.
        this.files.set(named, savedImage);
        this.restoredFiles.set(entry.image, savedImage);
      }
      return entry;
    };
    return saved.map(({ turn, files }) => {
      const kept = files.map((file, i) => (file === null ? undefined : sharedImage(file, turn.images[i].name)));
      const images = turn.images.map(({ name }, i): TurnImage => kept[i]?.image ?? { name, notKept: true });
      const complete = kept.every((entry) => entry !== undefined);
      return {
        turn: settled({ ...turn, images }),
        inputs: complete ? kept.map((entry) => entry!.input) : [],
      };
    });
  }

  /** One image file, or why it is not kept. */
  private async readImage(
    file: string,
    name: string,
    room: number,
  ): Promise<{ input: ImageInput; bytes: number } | string> {
    try {
      const bytes = await readBounded(confined(this.folder, file), Math.min(room, MAX_IMAGE_BYTES));
      if (!bytes) return `${file} is gone`;
      const [, hash, format] = IMAGE_FILE.exec(file)!;
      if (sha256(bytes) !== hash) return `${file} was changed`;
      if (checkImageFile(bytes, name).format !== format) return `${file} is not a ${format} image`;
      return {
        input: { name, dataBase64: bytes.toString('base64'), format: format as ImageInput['format'] },
        bytes: bytes.length,
      };
    } catch (error) {
      return messageOf(error);
    }
  }
}

/** conversation.json as written, checked field by field (each turn with the chat's own parser). */
function parseStore(value: unknown): SavedTurn[] {
  const store = record(value, 'the saved chat');
  if (store.version !== VERSION)
    throw new MessageError(`its version is ${String(store.version)}; expected ${VERSION}.`);
  return array(store.turns, 'turns').map((entry, i) => {
    const saved = record(entry, `turns[${i}]`);
    const turn = parseTurn(saved.turn, `turns[${i}].turn`);
    const files = array(saved.files, `turns[${i}].files`).map((file, j) => {
      if (file === null) return null;
      if (typeof file !== 'string' || !IMAGE_FILE.test(file))
        throw new MessageError(`turns[${i}].files[${j}] is not the name of a saved image.`);
      return file;
    });
    if (files.length !== turn.images.length)
      throw new MessageError(`turns[${i}] has ${turn.images.length} images and ${files.length} files.`);
    if (files.length > MAX_IMAGES_PER_QUESTION)
      throw new MessageError(`turns[${i}] has ${files.length} images; a question carries ${MAX_IMAGES_PER_QUESTION}.`);
    return { turn, files };
  });
}

/** A turn as it comes back: a reply cut off by the reload is kept as far as it got, as stopped. */
function settled(turn: Turn): Turn {
  const settle = (reply: Reply): Reply => {
    const result: Reply = { ...reply };
    if (reply.status === 'waiting' || reply.status === 'streaming') {
      result.status = 'done';
      result.stopReason = 'cancelled';
    }
    if (reply.stats) {
      // A speedup being measured then never comes.
      result.stats = { ...reply.stats };
      delete result.stats.measuringSpeedup;
    }
    return result;
  };
  return { ...turn, answer: settle(turn.answer), ...(turn.full ? { full: settle(turn.full) } : {}) };
}

/** Refuses a store folder that is a link (or not a folder): its files would be written and read elsewhere. */
async function checkRealFolder(folder: string): Promise<void> {
  if (!(await fs.promises.lstat(folder)).isDirectory())
    throw new Error(`${folder} is not a folder of its own (a link?)`);
}

/** The size of `file` in bytes; undefined when there is none. */
async function sizeOf(file: string): Promise<number | undefined> {
  try {
    return (await fs.promises.stat(file)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** The path of `file` inside `folder`; throws when it would lie anywhere else. */
export function confined(folder: string, file: string): string {
  const resolved = path.resolve(folder, file);
  const relative = path.relative(path.resolve(folder), resolved);
  if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative))
    throw new Error(`${file} is not inside ${folder}`);
  return resolved;
}

/**
 * A plain file's bytes, read only when it holds at most `most` bytes; undefined when there is no file. The size is
 * checked on the open file, so a file swapped or grown after a check is not read whole; a link is not followed, and a
 * named pipe does not block the open.
 */
async function readBounded(file: string, most: number): Promise<Buffer | undefined> {
  const { O_RDONLY, O_NOFOLLOW = 0, O_NONBLOCK = 0 } = fs.constants;
  let handle: fs.promises.FileHandle;
  try {
    // Windows has no O_NOFOLLOW: there a link is looked for before the open.
    if (O_NOFOLLOW === 0 && (await fs.promises.lstat(file)).isSymbolicLink())
      throw Object.assign(new Error(`${file} is a link`), { code: 'ELOOP' });
    handle = await fs.promises.open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if ((error as NodeJS.ErrnoException).code === 'ELOOP')
      throw new Error(`${path.basename(file)} is a link`, { cause: error });
    throw error;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`${path.basename(file)} is not a plain file`);
    if (stat.size > most) throw new Error(`${path.basename(file)} has ${stat.size} bytes, more than ${most}`);
    const bytes = Buffer.alloc(stat.size);
    const { bytesRead } = await handle.read(bytes, 0, stat.size, 0);
    return bytes.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
