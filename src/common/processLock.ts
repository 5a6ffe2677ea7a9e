/**
 * One process at a time on something several share (a model's download, the saved chat): two VS Code windows share
 * the extension's storage, and two CLI runs share the models folder. The lock is a file created exclusively, holding
 * its owner's pid, host and a random token; the owner touches it while it works, so a lock whose owner died (same
 * host, pid gone) or stopped touching it is stale and taken over. Its errors are in the caller's words.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { removeFailedWrite } from './atomicFile';
import { processAlive } from './processes';

/** How often the owner touches its lock file. */
const HEARTBEAT_MS = 5_000;
/** A lock untouched this long is stale even if its pid lives: the pid was reused, or the lock is another host's. */
export const STALE_LOCK_MS = 60_000;
/** How often a process waiting for the lock looks again. */
const WAIT_POLL_MS = 1_000;

export interface LockOwner {
  pid: number;
  host: string;
  /** when the owner took the lock (ISO 8601) */
  since: string;
  /** tells this owner's lock from a later one of the same pid */
  token: string;
}

/** What the lock's errors say, in the words of what it guards. */
export interface LockWording {
  /** a live process holds the lock and the caller does not wait; `holder` says which ("process 12, since …") */
  busy(holder: string): Error;
  /** another process took the lock over, judging this one stale */
  takenOver(): Error;
  /** the caller's signal stopped the wait */
  waitStopped(): Error;
  /** the lock file cannot be written: the error to throw instead, or undefined to throw `error` as it is */
  diskError(error: unknown, file: string): Error | undefined;
}

export interface LockOptions {
  /** wait for a live owner to finish (true), or fail at once saying who holds it (false) */
  wait: boolean;
  signal?: AbortSignal;
  /** called once when the lock is found held, before waiting */
  onWait?: (owner: LockOwner | undefined) => void;
  /** how often a waiting process looks again (default 1 s; a lock held for milliseconds wants less) */
  pollMs?: number;
}

export class ProcessLock {
  private readonly heartbeat: NodeJS.Timeout;
  /** aborted once another process has taken the lock over */
  private readonly taken = new AbortController();

  private constructor(
    readonly file: string,
    private readonly owner: LockOwner,
    private readonly wording: LockWording,
  ) {
    this.heartbeat = setInterval(() => this.touch(), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Takes the lock in `file`, taking over a stale one; its errors say what `wording` says. */
  static async acquire(file: string, wording: LockWording, options: LockOptions): Promise<ProcessLock> {
    let announced = false;
    for (;;) {
      const owner: LockOwner = {
        pid: process.pid,
        host: os.hostname(),
        since: new Date().toISOString(),
        token: randomUUID(),
      };
      if (createExclusively(file, JSON.stringify(owner), wording)) return new ProcessLock(file, owner, wording);
      let held: HeldLock | undefined;
      try {
        held = readLock(file);
      } catch (error) {
        // A folder in the lock's place (EISDIR): said as the lock's other disk errors are.
        throw wording.diskError(error, file) ?? error;
      }
      if (held === undefined) continue;
      if (isStale(held)) {
        removeIfUnchanged(file, held.raw);
        continue;
      }
      if (!options.wait) throw wording.busy(holderOf(held.owner));
      if (!announced) options.onWait?.(held.owner);
      announced = true;
      await delay(options.pollMs ?? WAIT_POLL_MS, undefined, { signal: options.signal }).catch(() => {
        throw wording.waitStopped();
      });
    }
  }

  /**
   * Throws when another process took the lock over (it judged this one stale): what it guards is not this process's
   * alone any more.
   */
  assertHeld(): void {
    this.touch();
    if (this.taken.signal.aborted) throw this.wording.takenOver();
  }

  /** Aborts once another process has taken the lock over: what this one is writing must stop at once. */
  get signal(): AbortSignal {
    return this.taken.signal;
  }

  release(): void {
    clearInterval(this.heartbeat);
    if (!this.taken.signal.aborted && readLock(this.file)?.owner?.token === this.owner.token)
      fs.rmSync(this.file, { force: true });
  }

  private touch(): void {
    if (this.taken.signal.aborted) return;
    if (readLock(this.file)?.owner?.token !== this.owner.token) {
      this.taken.abort();
      return;
    }
    const now = new Date();
    fs.utimesSync(this.file, now, now);
  }
}

/** A live process holds the lock in `file` (it exists and is not stale). */
export function lockIsHeld(file: string): boolean {
  const held = readLock(file);
  return held !== undefined && !isStale(held);
}

/** Creates `file` with `content` unless it exists; false when it does. */
function createExclusively(file: string, content: string, wording: LockWording): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw wording.diskError(error, file) ?? error;
  }
  try {
    fs.writeSync(fd, content);
  } catch (error) {
    // Left empty, the lock would tell every taker for a minute that another process holds it.
    removeFailedWrite(file, fd);
    throw wording.diskError(error, file) ?? error;
  }
  try {
    fs.closeSync(fd);
  } catch (error) {
    // Left whole, the lock would hold off every taker until stale; the failed close released fd already.
    removeFailedWrite(file);
    throw wording.diskError(error, file) ?? error;
  }
  return true;
}

interface HeldLock {
  raw: string;
  /** undefined while the owner is still writing it, or when it is garbage */
  owner: LockOwner | undefined;
  touchedAt: number;
}

/** The lock as it is now; undefined when it vanished meanwhile. */
function readLock(file: string): HeldLock | undefined {
  try {
    const touchedAt = fs.statSync(file).mtimeMs;
    const raw = fs.readFileSync(file, 'utf8');
    return { raw, owner: parseOwner(raw), touchedAt };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function parseOwner(raw: string): LockOwner | undefined {
  try {
    const value = JSON.parse(raw) as Partial<LockOwner>;
    const valid =
      Number.isInteger(value.pid) &&
      typeof value.host === 'string' &&
      typeof value.since === 'string' &&
      typeof value.token === 'string';
    return valid ? (value as LockOwner) : undefined;
  } catch {
    return undefined;
  }
}

function isStale(held: HeldLock): boolean {
  if (Date.now() - held.touchedAt > STALE_LOCK_MS) return true;
  return held.owner !== undefined && held.owner.host === os.hostname() && !processAlive(held.owner.pid);
}

/**
 * Removes a stale lock unless it changed since it was judged stale. Two processes judging the same lock stale at the
 * same instant can still both take it; the owner's heartbeat notices the theft (`signal`, `assertHeld`).
 */
function removeIfUnchanged(file: string, judged: string): void {
  if (readLock(file)?.raw === judged) fs.rmSync(file, { force: true });
}

/** The lock's owner as the busy message names it. */
function holderOf(owner: LockOwner | undefined): string {
  if (!owner) return 'another process';
  return `process ${owner.pid}${owner.host === os.hostname() ? '' : ` on ${owner.host}`}, since ${owner.since}`;
}
