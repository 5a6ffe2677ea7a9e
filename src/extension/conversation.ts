/**
 * The conversation as the extension keeps it — the source of truth every chat webview is drawn from, so it
 * survives hidden views, reloads and engine restarts — and the images waiting for the next question.
 * Each change returns the message that tells the webviews about it. Free of 'vscode' so it is plainly testable.
 */
import { randomUUID } from 'node:crypto';
import type {
  AnswerStopReason,
  AnswerStatsView,
  HostMessage,
  PendingImage,
  Reply,
  ReplyKind,
  SpeedupView,
  Turn,
  TurnImage,
} from '../protocol/webview';
import { FicocoError } from '../common/errors';
import { IMAGE_MIME_TYPES, MAX_IMAGES_PER_QUESTION, checkImageFile, type ImageFormat } from '../common/imageFile';
import { decodedLength, type HistoryMessage, type ImageAttachment } from '../protocol/engine';

/**
 * An image as it crosses to the engine (its file, base64, as the page sent it or encoded once when read from disk)
 * and the format its header says, which names the preview's MIME type.
 */
export interface ImageInput extends ImageAttachment {
  format: ImageFormat;
}

/** Largest image shown inline as a data: URL; the conversation keeps it and re-sends it on every webview reload. */
export const MAX_PREVIEW_BYTES = 4 * 1024 * 1024;

/**
 * A turn with the images it was asked with, in the order of `turn.images`: all of them, or none where a restored
 * chat did not keep them all (then it cannot be asked again, and a follow-up needs a new image).
 */
export interface TurnRecord {
  turn: Turn;
  inputs: ImageInput[];
}

/** A question handed back to the page, with why. */
export type HeldQuestion = Extract<HostMessage, { type: 'questionHeld' }>;

export class Conversation {
  private turns: TurnRecord[] = [];
  private pending: { image: PendingImage; input: ImageInput }[] = [];
  private nextImageId = 1;
  /** why an image was refused since the last question: that question is held back once, not asked about other images */
  private refusal: string | undefined;

  /**
   * Everything so far, for a webview that has just (re)loaded: a refusal sent while it was hidden or loading (the
   * Explorer reveals the chat as it adds a file) is shown then.
   */
  state(): HostMessage {
    const turns = this.turns.map(({ turn }) => structuredClone(turn));
    return { type: 'state', turns, pending: this.pendingImages(), ...(this.refusal ? { notice: this.refusal } : {}) };
  }

  /** The turns as they stand, for the store to save: read them, never change them. */
  records(): readonly Readonly<TurnRecord>[] {
    return this.turns;
  }

  /** Puts turns saved before a reload in front of the conversation, with their ids (the store merges by them). */
  restore(records: readonly TurnRecord[]): void {
    this.turns = [...records, ...this.turns];
  }

  /** How many more images the next question can carry. */
  imageRoom(): number {
    return MAX_IMAGES_PER_QUESTION - this.pending.length;
  }

  /** Adds images for the next question; returns the message, or throws when that would pass the per-question limit. */
  addPending(images: ImageInput[]): HostMessage {
    if (this.pending.length + images.length > MAX_IMAGES_PER_QUESTION) {
      throw new RangeError(`A question can carry ${MAX_IMAGES_PER_QUESTION} images; remove some before adding more.`);
    }
    for (const input of images)
      this.pending.push({ image: { id: `image-${this.nextImageId++}`, ...turnImage(input) }, input });
    return { type: 'pending', pending: this.pendingImages() };
  }

  /**
   * Takes images whose header passes the limits (src/common/imageFile.ts), each in the one form it crosses to the
   * engine in; `refused` are the batch's files turned away before their bytes were read. A refused image is a notice
   * and holds the next question back; a batch taken whole lets it go again.
   */
  addImages(images: readonly ImageAttachment[], refused: readonly string[] = []): HostMessage[] {
    const notices = refused.map((reason) => this.refuse(reason));
    const accepted = images.flatMap((image): ImageInput[] => {
      try {
        return [{ ...image, format: checkImageFile(Buffer.from(image.dataBase64, 'base64'), image.name).format }];
      } catch (error) {
        if (!(error instanceof FicocoError)) throw error;
        notices.push(this.refuse(error.message));
        return [];
      }
    });
    if (accepted.length === 0) return notices;
    try {
      const added = this.addPending(accepted);
      if (notices.length === 0) this.refusal = undefined;
      return [...notices, added];
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      return [...notices, this.refuse(error.message)];
    }
  }

  /** Refuses an image (or a file that was to be one) for the reason given; the next question is held back once (ask). */
  refuse(reason: string): HostMessage {
    this.refusal = reason;
    return { type: 'notice', message: reason };
  }

  /**
   * A question as the user sends it: its turn, or the question handed back to its box with why — when an image was
   * refused since the last question (asked now, it would go about the images already here; sent again, it is asked),
   * or when there is no image yet.
   */
  ask(question: string): { turn: Turn; inputs: ImageInput[]; messages: HostMessage[] } | { held: HeldQuestion } {
    const held = (message: string) => ({ held: { type: 'questionHeld' as const, question, message } });
    const reason = this.refusal;
    if (reason !== undefined) {
      this.refusal = undefined;
      return held(`${reason} The question was not sent: attach another image, or send it again to ask without it.`);
    }
    return this.startTurn(question) ?? held('Paste, drop or attach an image first, then ask about it.');
  }

  removePending(id: string): HostMessage {
    this.pending = this.pending.filter((entry) => entry.image.id !== id);
    return { type: 'pending', pending: this.pendingImages() };
  }

  /**
   * Starts a turn with the waiting images; a follow-up without new images asks about the latest turn's images.
   * Returns undefined when there is no image at all.
   */
  startTurn(question: string): { turn: Turn; inputs: ImageInput[]; messages: HostMessage[] } | undefined {
    const fresh = this.pending.length > 0;
    const images = fresh ? this.pending.map((entry) => entry.image) : this.latest()?.turn.images;
    const inputs = fresh ? this.pending.map((entry) => entry.input) : this.latest()?.inputs;
    if (!images || !inputs || inputs.length === 0) return undefined;
    const turn: Turn = {
      // Unique across windows and reloads: a saved chat two windows share is merged by turn id.
      id: `turn-${randomUUID()}`,
      question,
      images: images.map(({ name, src }) => (src ? { name, src } : { name })),
      answer: { text: '', status: 'waiting' },
    };
    this.turns.push({ turn, inputs });
    this.pending = [];
    const messages: HostMessage[] = [{ type: 'turnAdded', turn: structuredClone(turn) }];
    if (fresh) messages.push({ type: 'pending', pending: [] });
    return { turn: structuredClone(turn), inputs, messages };
  }

  /** The earlier questions and answers (text only) a turn continues. */
  history(turnId: string): HistoryMessage[] {
    const index = this.turns.findIndex(({ turn }) => turn.id === turnId);
    return this.turns.slice(0, Math.max(0, index)).flatMap(({ turn }): HistoryMessage[] =>
      turn.answer.status === 'done' && turn.answer.text.trim() !== ''
        ? [
            { role: 'user', text: turn.question },
            { role: 'assistant', text: turn.answer.text.trim() },
          ]
        : [],
    );
  }

  /** The question and images of a turn, for asking it again; undefined when its images were not all kept. */
  turnInputs(turnId: string): { question: string; inputs: ImageInput[] } | undefined {
    const stored = this.find(turnId);
    return stored && stored.inputs.length > 0 ? { question: stored.turn.question, inputs: stored.inputs } : undefined;
  }

  /** Opens the full-token reply of a turn ("Compare with full tokens"). */
  startFull(turnId: string): HostMessage | undefined {
    const stored = this.find(turnId);
    if (!stored) return undefined;
    stored.turn.full = { text: '', status: 'waiting' };
    return this.updated(stored);
  }

  appendText(turnId: string, kind: ReplyKind, text: string): HostMessage | undefined {
    const reply = this.reply(turnId, kind);
    if (!reply) return undefined;
    reply.text += text;
    reply.status = 'streaming';
    // The first text takes the place of the progress, as it does on the page.
    delete reply.progress;
    return { type: 'replyText', turnId, reply: kind, text };
  }

  /** What the engine is doing for a reply waiting for its first text; kept, so a page drawn again draws it too. */
  progress(turnId: string, kind: ReplyKind, label: string): HostMessage | undefined {
    const reply = this.reply(turnId, kind);
    if (!reply) return undefined;
    reply.progress = label;
    return { type: 'replyProgress', turnId, reply: kind, label };
  }

  /** Stop was asked for a reply: until it ends, every page draws its Stop pending. */
  stopping(turnId: string, kind: ReplyKind): HostMessage | undefined {
    return this.change(turnId, kind, (reply) => {
      reply.stopping = true;
    });
  }

  finish(
    turnId: string,
    kind: ReplyKind,
    stopReason: AnswerStopReason,
    stats?: AnswerStatsView,
  ): HostMessage | undefined {
    return this.end(turnId, kind, (reply) => {
      reply.status = 'done';
      reply.stopReason = stopReason;
      if (stats) reply.stats = stats;
    });
  }

  fail(turnId: string, kind: ReplyKind, error: string): HostMessage | undefined {
    return this.end(turnId, kind, (reply) => {
      reply.status = 'error';
      reply.error = error;
    });
  }

  /** Ends the speedup measurement of an answer: with its figure, or without one (cancelled, failed). */
  setSpeedup(turnId: string, speedup: SpeedupView | undefined): HostMessage | undefined {
    return this.change(turnId, 'answer', (reply) => {
      if (!reply.stats) return;
      delete reply.stats.measuringSpeedup;
      if (speedup) reply.stats.speedup = speedup;
    });
  }

  clear(): HostMessage {
    this.turns = [];
    this.pending = [];
    this.refusal = undefined;
    return this.state();
  }

  /** Ends a reply: what it said while it ran (its progress, a stop under way) ends with it. */
  private end(turnId: string, kind: ReplyKind, apply: (reply: Reply) => void): HostMessage | undefined {
    return this.change(turnId, kind, (reply) => {
      delete reply.progress;
      delete reply.stopping;
      apply(reply);
    });
  }

  private change(turnId: string, kind: ReplyKind, apply: (reply: Reply) => void): HostMessage | undefined {
    const stored = this.find(turnId);
    const reply = stored && (kind === 'answer' ? stored.turn.answer : stored.turn.full);
    if (!stored || !reply) return undefined;
    apply(reply);
    return this.updated(stored);
  }

  private updated(stored: TurnRecord): HostMessage {
    return { type: 'turnUpdated', turn: structuredClone(stored.turn) };
  }

  /** A copy of a turn as it stands. */
  turn(turnId: string): Turn | undefined {
    const stored = this.find(turnId);
    return stored && structuredClone(stored.turn);
  }

  private reply(turnId: string, kind: ReplyKind): Reply | undefined {
    const turn = this.find(turnId)?.turn;
    return kind === 'answer' ? turn?.answer : turn?.full;
  }

  private find(turnId: string): TurnRecord | undefined {
    return this.turns.find(({ turn }) => turn.id === turnId);
  }

  private latest(): TurnRecord | undefined {
    return this.turns.at(-1);
  }

  private pendingImages(): PendingImage[] {
    return this.pending.map((entry) => ({ ...entry.image }));
  }
}

/** The image as the webview shows it: inlined as a data: URL when it is small enough. */
export function turnImage({ name, dataBase64, format }: ImageInput): TurnImage {
  if (decodedLength(dataBase64) > MAX_PREVIEW_BYTES) return { name };
  return { name, src: `data:${IMAGE_MIME_TYPES[format]};base64,${dataBase64}` };
}
