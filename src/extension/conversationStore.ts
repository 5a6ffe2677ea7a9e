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
 * one it could not read.
 *
 * Windows without a folder share the global storage, and two windows (browser tabs of code-server, say) can open one
 * workspace: each save merges, by turn id, the turns another window saved meanwhile, so neither window's turns are
 * lost. A turn this window held and no longer does (New Chat, the cap) is dropped; one it never held is another
 * window's and kept. The index is read again only when its stat says another window wrote it. A save holds a lock
 * file beside the folder (`chat.lock`, a ProcessLock) from reading the index to removing the images no turn uses,
 * so two windows' saves never interleave: neither writes over the other's turn, nor removes the image the other has
 * just written. Free of 'vscode' so it is plainly testable.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IMAGE_FORMATS, MAX_IMAGES_PER_QUESTION, MAX_IMAGE_BYTES, checkImageFile } from '../common/imageFile';
import { writeFileAtomically } from '../common/atomicFile';
import { fieldReaders } from '../protocol/fields';
import { MessageError, type Reply, type Turn, type TurnImage, parseTurn } from '../protocol/webview';
import { type ImageInput, type TurnRecord, turnImage } from './conversation';
import { decodedLength } from '../protocol/engine';
import { diskFailureMessage, notAFolderMessage } from '../common/diskFailure';
import { type LockWording, ProcessLock } from '../common/processLock';

/** The turns kept: older ones leave the store (and the chat, at the next reload). */
export const MAX_STORED_TURNS = 100;
/** The image bytes kept per conversation: a 1080p PNG screenshot is 0.2–2 MB, so dozens fit. */
export const MAX_STORED_IMAGE_BYTES = 64 * 1024 * 1024;
/** The largest conversation.json written or read: a tiled screenshot's reduction overlay is the bulk of a turn. */
export const MAX_STORED_TEXT_BYTES = 16 * 1024 * 1024;
/** How long streamed text waits before it is saved (a turn asked or finished is saved at once). */
export const STREAMING_SAVE_DELAY_MS = 1000;
/** The longest a save waits for another window's: one holds the lock for milliseconds, and deactivate waits for it. */
export const SAVE_LOCK_WAIT_MS = 2000;
/** How often a save waiting for another window's looks again. */
const SAVE_LOCK_POLL_MS = 20;

/** The save's lock in the chat's words: a window's log line says them after "could not save the chat in …: ". */
const SAVE_LOCK_WORDING: LockWording = {
  busy: (holder) => new Error(`another window is saving the chat (${holder})`),
  takenOver: () => new Error("another window took over the chat's save; the next change saves this window's turns"),
  waitStopped: () => new Error("stopped waiting for another window's save of the chat"),
  diskError: (error, file) => chatDiskFailure(error, file, 'write'),
};

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

/** A turn as a save writes it: its id, its JSON (without previews), and the file of each image (null: not kept). */
interface StoredTurn {
  id: string;
  json: string;
  files: (string | null)[];
}

/** A turn a save is to write, each image with the file it may be kept in (none: it cannot be). */
interface TurnToWrite {
  id: string;
  json: string;
  images: (ImageSource | undefined)[];
}

/** An image's file, and its bytes where they are still to be written (a new image's input); none: the file is there. */
interface ImageSource extends SavedImage {
  input?: ImageInput;
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
   * the id of every turn this window held (read back or asked here): a saved turn not among them is another window's
   * on the same storage, which saves keep
   */
  private readonly heldTurns = new Set<string>();
  /** the index as this window last read or wrote it, by its stat: read again only when another window wrote it */
  private onDisk: { signature: string; turns: StoredTurn[] } | undefined;

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
      if (!this.failing) this.log.warn(`could not save the chat in ${this.folder}: ${this.reasonOf(error, 'write')}`);
      this.failing = true;
    }
  }

  /**
   * Writes the turns, with those another window on the same storage saved meanwhile: new image files first, then the
   * index, then the image files no longer used are deleted. The turns' text is taken before the first wait, so answers
   * streaming meanwhile do not tear it.
   */
  async save(records: readonly Readonly<TurnRecord>[]): Promise<void> {
    const ours = records.slice(-this.limits.turns).map((record) => this.toWrite(record));
    for (const { id } of ours) this.heldTurns.add(id);
    const lock = await this.lock();
    try {
      await this.saveLocked(ours);
    } finally {
      lock?.release();
    }
  }

  /**
   * The lock of the store, beside its folder (a save of no turns deletes the folder). After SAVE_LOCK_WAIT_MS for
   * another window's save, none, and a log line: the save goes on without it, since skipping it would lose this
   * window's last turns at its close, where a race only costs what this window's next save writes again.
   */
  private async lock(): Promise<ProcessLock | undefined> {
    await fs.promises.mkdir(path.dirname(this.folder), { recursive: true });
    const waitOver = AbortSignal.timeout(SAVE_LOCK_WAIT_MS);
    try {
      return await ProcessLock.acquire(`${this.folder}.lock`, SAVE_LOCK_WORDING, {
        wait: true,
        signal: waitOver,
        pollMs: SAVE_LOCK_POLL_MS,
      });
    } catch (error) {
      if (!waitOver.aborted) throw error;
      this.log.warn(
        `another window held ${this.folder}.lock for ${SAVE_LOCK_WAIT_MS / 1000} s; the chat was saved without it`,
      );
      return undefined;
    }
  }

  private async saveLocked(ours: TurnToWrite[]): Promise<void> {
    const exists = await realFolderExists(this.folder, 'write');
    const onDisk = exists ? await this.turnsOnDisk() : [];
    const theirs = await this.othersToWrite(onDisk);
    const turns = merged(ours, onDisk, theirs).slice(-this.limits.turns);
    if (turns.length === 0) {
      await fs.promises.rm(this.folder, { recursive: true, force: true });
      this.onDisk = undefined;
      return;
    }
    if (!exists) await fs.promises.mkdir(this.folder, { recursive: true });
    const { stored, sources } = this.withinImageBytes(turns);
    const written = this.fitText(stored);
    const used = new Set(written.flatMap(({ files }) => files.filter((file): file is string => file !== null)));
    for (const file of used) {
      const { size, input } = sources.get(file)!;
      const target = path.join(this.folder, file);
      // An image read back is on disk already; a new one is decoded again only to be written.
      if (input && (await sizeOf(target)) !== size)
        await writeFileAtomically(target, Buffer.from(input.dataBase64, 'base64'));
    }
    const index = path.join(this.folder, INDEX_FILE);
    await writeFileAtomically(
      index,
      Buffer.from(`{"version":${VERSION},"turns":[${written.map(savedJson).join(',')}]}`),
    );
    const signature = await signatureOf(index);
    this.onDisk = signature === undefined ? undefined : { signature, turns: written };
    for (const name of await fs.promises.readdir(this.folder))
      if (IMAGE_FILE.test(name) && !used.has(name)) await fs.promises.rm(path.join(this.folder, name), { force: true });
  }

  /** The turns in the index now; [] when there is none, or one this version cannot read (a save writes over it). */
  private async turnsOnDisk(): Promise<StoredTurn[]> {
    const index = path.join(this.folder, INDEX_FILE);
    const signature = await signatureOf(index);
    if (signature === undefined) return [];
    if (signature !== this.onDisk?.signature) {
      let turns: StoredTurn[] = [];
      try {
        const text = await readBounded(index, this.limits.textBytes);
        if (text) turns = parseStore(JSON.parse(text.toString('utf8'))).map(storedTurn);
      } catch {
        // Written over, as it was before saves merged; load() logged why it could not be read.
      }
      this.onDisk = { signature, turns };
    }
    return this.onDisk.turns;
  }

  /** The turns on disk that another window saved (this one never held them), by id, each image with its file's size. */
  private async othersToWrite(onDisk: StoredTurn[]): Promise<Map<string, TurnToWrite>> {
    const others = onDisk.filter(({ id }) => !this.heldTurns.has(id));
    const sizes = new Map<string, number | undefined>();
    for (const file of new Set(others.flatMap(({ files }) => files)))
      if (file !== null) sizes.set(file, await sizeOf(path.join(this.folder, file)));
    return new Map(
      others.map(({ id, json, files }) => {
        const images = files.map((file) => {
          const size = file === null ? undefined : sizes.get(file);
          return file !== null && size !== undefined ? { file, size } : undefined;
        });
        return [id, { id, json, images }];
      }),
    );
  }

  /** The saved turns as the conversation takes them back; [] when there are none or they cannot be read. */
  async load(): Promise<TurnRecord[]> {
    try {
      if (!(await realFolderExists(this.folder, 'read'))) return [];
      const text = await readBounded(path.join(this.folder, INDEX_FILE), this.limits.textBytes);
      if (text === undefined) return [];
      const saved = parseStore(JSON.parse(text.toString('utf8')));
      // The turns left out by the cap too: they are this window's to drop, not another window's to keep.
      for (const { turn } of saved) this.heldTurns.add(turn.id);
      return await this.withImages(saved.slice(-this.limits.turns));
    } catch (error) {
      this.log.warn(
        `the chat saved in ${this.folder} could not be read, so it starts empty: ${this.reasonOf(error, 'read')}`,
      );
      return [];
    }
  }

  /** A turn of this window as a save writes it: a new image with its input, one read back with its file. */
  private toWrite({ turn, inputs }: Readonly<TurnRecord>): TurnToWrite {
    const images = turn.images.map((image, i): ImageSource | undefined => {
      const input = inputs[i];
      return input ? { ...this.imageFile(input), input } : this.restoredFiles.get(image);
    });
    // The previews are made again from the files when the chat is read back.
    let json = this.turnJson.get(turn.id);
    if (json === undefined) {
      json = JSON.stringify({ ...turn, images: turn.images.map(({ name }) => ({ name })) });
      this.turnJson.set(turn.id, json);
    }
    return { id: turn.id, json, images };
  }

  /**
   * Each turn with the files of its images kept, newest first up to the limit, and where each file's bytes come
   * from: a new image's input, or none for an image whose file is there.
   */
  private withinImageBytes(turns: TurnToWrite[]): { stored: StoredTurn[]; sources: Map<string, ImageSource> } {
    const sources = new Map<string, ImageSource>();
    let total = 0;
    const newestFirst = [...turns].reverse().map(({ id, json, images }): StoredTurn => {
      const files = images.map((image) => {
        if (!image) return null;
        if (!sources.has(image.file)) {
          if (total + image.size > this.limits.imageBytes) return null;
          total += image.size;
          sources.set(image.file, image);
        }
        return image.file;
      });
      return { id, json, files };
    });
    return { stored: newestFirst.reverse(), sources };
  }

  /** The newest turns whose text fits the limit. */
  private fitText(turns: StoredTurn[]): StoredTurn[] {
    let room = this.limits.textBytes - 64;
    let first = turns.length;
    while (first > 0 && Buffer.byteLength(savedJson(turns[first - 1])) + 1 <= room)
      room -= Buffer.byteLength(savedJson(turns[--first])) + 1;
    return turns.slice(first);
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
      return chatDiskFailure(error, file, 'read')?.message ?? messageOf(error);
    }
  }

  /** Why a save or a load failed: a disk failure of the store's folder with what to do, any other error as it says. */
  private reasonOf(error: unknown, access: 'read' | 'write'): string {
    return chatDiskFailure(error, this.folder, access)?.message ?? messageOf(error);
  }
}

/**
 * A disk failure of the chat's `file` that says what to do (for a write: and that the next change saves the chat,
 * which this window keeps meanwhile); undefined when `error` is not one.
 */
function chatDiskFailure(error: unknown, file: string, access: 'read' | 'write'): Error | undefined {
  const message = diskFailureMessage(error, file, access);
  return message === undefined ? undefined : chatFailure(message, access, error);
}

/** A failure of the chat's disk that `message` says what to do about, worded as chatDiskFailure words one. */
function chatFailure(message: string, access: 'read' | 'write', cause?: unknown): Error {
  return new Error(access === 'write' ? `${message}, and the next change saves the chat` : message, { cause });
}

/** conversation.json as written, checked field by field (each turn with the chat's own parser). */
function parseStore(value: unknown): SavedTurn[] {
  const store = record(value, 'the saved chat');
  if (store.version !== VERSION)
    throw new MessageError(`its version is ${String(store.version)}; expected ${VERSION}.`);
  const ids = new Set<string>();
  return array(store.turns, 'turns').map((entry, i) => {
    const saved = record(entry, `turns[${i}]`);
    const turn = parseTurn(saved.turn, `turns[${i}].turn`);
    // Ids name turns across windows and reloads: two alike would make one turn's changes the other's.
    if (ids.has(turn.id)) throw new MessageError(`turns[${i}] has the id of an earlier turn, ${turn.id}.`);
    ids.add(turn.id);
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
    // What it said while it ran (its progress, a stop under way) ended with the window.
    delete result.progress;
    delete result.stopping;
    if (reply.stats) {
      // A speedup being measured then never comes.
      result.stats = { ...reply.stats };
      delete result.stats.measuringSpeedup;
    }
    return result;
  };
  return { ...turn, answer: settle(turn.answer), ...(turn.full ? { full: settle(turn.full) } : {}) };
}

/**
 * Whether the store folder exists; throws, saying what to do, when it is a link (whose files would be written and read
 * elsewhere) or a file. `access`: whether the chat is being read or written.
 */
async function realFolderExists(folder: string, access: 'read' | 'write'): Promise<boolean> {
  const stat = await unlessMissing(() => fs.promises.lstat(folder));
  if (!stat) return false;
  if (!stat.isDirectory())
    throw chatFailure(notAFolderMessage(folder, stat.isSymbolicLink() ? 'link' : 'file'), access);
  return true;
}

/**
 * This window's turns, with the turns another window saved (`theirs`), each after the turn of this window it follows
 * on disk: both windows' turns are kept, in the order they were saved.
 */
function merged(ours: TurnToWrite[], onDisk: StoredTurn[], theirs: Map<string, TurnToWrite>): TurnToWrite[] {
  const ourIds = new Set(ours.map(({ id }) => id));
  // Another window's turns by the id of the turn of ours they follow (undefined: none, they come first).
  const following = new Map<string | undefined, TurnToWrite[]>();
  let previous: string | undefined;
  for (const { id } of onDisk) {
    if (ourIds.has(id)) previous = id;
    const their = theirs.get(id);
    if (their) following.set(previous, [...(following.get(previous) ?? []), their]);
  }
  return [...(following.get(undefined) ?? []), ...ours.flatMap((turn) => [turn, ...(following.get(turn.id) ?? [])])];
}

function storedTurn({ turn, files }: SavedTurn): StoredTurn {
  return { id: turn.id, json: JSON.stringify(turn), files };
}

/** A turn as conversation.json has it. */
function savedJson({ json, files }: StoredTurn): string {
  return `{"turn":${json},"files":${JSON.stringify(files)}}`;
}

/** What tells one version of `file` from another (a rename puts a new inode in place); undefined when there is none. */
async function signatureOf(file: string): Promise<string | undefined> {
  const stat = await unlessMissing(() => fs.promises.stat(file, { bigint: true }));
  return stat && `${stat.ino}:${stat.size}:${stat.mtimeNs}`;
}

/** The size of `file` in bytes; undefined when there is none. */
async function sizeOf(file: string): Promise<number | undefined> {
  return (await unlessMissing(() => fs.promises.stat(file)))?.size;
}

/** What `look()` finds, or undefined where the file it looks at does not exist; any other failure is thrown. */
async function unlessMissing<T>(look: () => Promise<T>): Promise<T | undefined> {
  try {
    return await look();
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
