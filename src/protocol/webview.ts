/**
 * Messages between the extension and its FiCoCo chat webviews (postMessage, structured clone of plain data).
 * The extension owns the conversation and the images waiting to be sent; a webview only draws them and
 * reports what the user does. When a webview (re)loads it says `ready` and the extension answers with the
 * whole state, then sends changes.
 *
 * The webview bundle includes this file, so it imports only plain helpers: no Node, vscode or engine code.
 */
import {
  IMAGE_MIME_TYPES,
  MAX_IMAGES_PER_QUESTION,
  MAX_IMAGE_BYTES,
  imageFileTooLarge,
  imageFormatOfFileName,
} from '../common/imageFile';
import { MAX_SEED } from '../common/random';
import { NO_REDUCTION, REDUCTION_RULES, type ReductionRule } from '../common/reductionChoice';
import { describeValue } from './describe';
import { type ImageRegion, type PatchFates, type PatchGrid, fieldReaders } from './fields';

export type { ImageRegion, PatchGrid };

/** The image limits and formats the webview checks at paste time, as the extension and the engine do after it. */
export { IMAGE_MIME_TYPES, MAX_IMAGES_PER_QUESTION, MAX_IMAGE_BYTES, imageFileTooLarge, imageFormatOfFileName };

const INLINE_IMAGE = new RegExp(`^data:(${Object.values(IMAGE_MIME_TYPES).join('|')});base64,`);

/** How an answer ended; the engine's StopReason. */
export type AnswerStopReason = 'stop-token' | 'max-tokens' | 'cancelled';
const STOP_REASONS: readonly string[] = ['stop-token', 'max-tokens', 'cancelled'];

/**
 * What one image looked like to the model after reduction, for the overlay: the engine's patch fates as they are read
 * (a tiled image's grid covers the whole screenshot, with its tile borders and its thumbnail's patches).
 */
export type ImageReduction = PatchFates;

/** The reduction an answer used, and which rule chose it. */
export interface ReductionView {
  method: string;
  /** as a person reads it: "64", "11%", "33.3%" (a share to 3 significant digits), or "all" */
  budget: string;
  rule: ReductionRule;
  /** the rule in a sentence, with its evidence ("measured for this model by ficoco tune: 96 % of …") */
  why: string;
}

/** Whether reduction made the prefill faster, beyond the noise band (see SpeedupView). */
export type SpeedupVerdict = 'faster' | 'same' | 'slower';
const SPEEDUP_VERDICTS: readonly string[] = ['faster', 'same', 'slower'];

/**
 * A measured speedup: the median over paired warm prefill runs of (unreduced ms) / (reduced ms), with the middle
 * half of the pairs' ratios as its noise band.
 */
export interface SpeedupView {
  ratio: number;
  low: number;
  high: number;
  pairs: number;
  verdict: SpeedupVerdict;
  /** "1.8× faster", "0.7× — slower than full tokens on this model" */
  label: string;
  /** what was timed, e.g. "prefill (vision + language model) on cpu" */
  timed: string;
}

/** What the webview shows under an answer. */
export interface AnswerStatsView {
  /** per image: visual tokens the image started as, and those that reached the decoder */
  visualTokens: { original: number; atDecoder: number }[];
  visionMs: number;
  /** the language model's prefill, without the vision tower */
  prefillMs: number;
  ttftMs: number;
  generatedTokens: number;
  decodeTokensPerSecond: number;
  provider: string;
  /** why the provider asked for did not run this answer ("cuda could not be used (…), running on CPU instead") */
  providerFallback?: string;
  /** the reduction used and why, absent for the unreduced model */
  reduction?: ReductionView;
  /** analytic prefill FLOPs of this answer over the unreduced prompt's */
  flopsRatio?: number;
  /** measured once the answer is done: unreduced prefill against this answer's reduced one */
  speedup?: SpeedupView;
  /** the speedup is being measured now (it ends with a figure, or without one when the measurement failed) */
  measuringSpeedup?: boolean;
  /** per image, when a method reduced it */
  imageReductions?: ImageReduction[];
  /** the oldest messages of the conversation were left out so that question and answer fit the model's context */
  historyTrimmed?: { droppedMessages: number; contextTokens: number };
  /** the seed a sampled answer was drawn with, which set as ficoco.seed gives it again; absent for a greedy answer */
  seed?: number;
}

/** An answer some visual tokens were removed from (`auto` may choose to keep every token on a model). */
export function isReducedAnswer(stats: AnswerStatsView): boolean {
  return stats.reduction !== undefined && stats.reduction.method !== NO_REDUCTION;
}

/** The provider that ran an answer, with why the one asked for did not where it did not. */
export function providerLine(stats: AnswerStatsView): string {
  return stats.providerFallback ? `${stats.provider} — ${stats.providerFallback}` : stats.provider;
}

/** A sampled answer's seed, with what it is for (the chat's details and the status bar's tooltip). */
export function seedLine(seed: number): string {
  return `${seed} (set ficoco.seed to it to get this answer again)`;
}

export type ReplyStatus = 'waiting' | 'streaming' | 'done' | 'error';
const REPLY_STATUSES: readonly string[] = ['waiting', 'streaming', 'done', 'error'];

/** One answer to a question: the reduced one, or the full-token one "Compare" asks for. */
export interface Reply {
  /** markdown text received so far */
  text: string;
  status: ReplyStatus;
  stopReason?: AnswerStopReason;
  stats?: AnswerStatsView;
  /** when status is 'error' */
  error?: string;
  /** while it waits for its first text: what the engine is doing ("Reading the prompt: 40 %"), or what a stop waits for */
  progress?: string;
  /** Stop was asked for it and it has not ended yet: every page draws its Stop pending, a page shown again later too */
  stopping?: boolean;
}

export type ReplyKind = 'answer' | 'full';
const REPLY_KINDS: readonly string[] = ['answer', 'full'];

export interface TurnImage {
  /** the file name, also the thumbnail's alt text */
  name: string;
  /** a data: URL of the image; absent when there is no preview */
  src?: string;
  /** its bytes were not kept for after a reload (the stored chat keeps the newest images up to a size): shown by name */
  notKept?: boolean;
}

/** An image waiting in the composer, removable until the question is sent. */
export interface PendingImage extends TurnImage {
  id: string;
}

/** One question, its images and its answers. */
export interface Turn {
  id: string;
  question: string;
  images: TurnImage[];
  answer: Reply;
  /** the same question answered with every visual token, once "Compare with full tokens" was asked */
  full?: Reply;
}

/** Extension → webview. */
export type HostMessage =
  /** everything a (re)loaded page draws; `notice`: the refusal holding the next question back, when there is one */
  | { type: 'state'; turns: Turn[]; pending: PendingImage[]; notice?: string }
  | { type: 'turnAdded'; turn: Turn }
  | { type: 'turnUpdated'; turn: Turn }
  | { type: 'replyText'; turnId: string; reply: ReplyKind; text: string }
  /** a reply's new `progress`, drawn in place: "Reading the prompt: 40 %" */
  | { type: 'replyProgress'; turnId: string; reply: ReplyKind; label: string }
  | { type: 'pending'; pending: PendingImage[] }
  | { type: 'notice'; message: string }
  /** the question goes back into the box, with why: an image was refused since the last question */
  | { type: 'questionHeld'; question: string; message: string };

/** An image file the webview read (pasted or dropped from the OS), base64. */
export interface ImageFile {
  name: string;
  dataBase64: string;
}

/** Webview → extension. */
export type WebviewMessage =
  | { type: 'ready' }
  | { type: 'ask'; question: string }
  | { type: 'stop'; turnId: string }
  | { type: 'compare'; turnId: string }
  | { type: 'newChat' }
  | { type: 'attach' }
  /** pasted or dropped files: those read, and why each other one could not be (its format, its size) */
  | { type: 'addImages'; images: ImageFile[]; refused: string[] }
  | { type: 'addUris'; uris: string[] }
  | { type: 'removeImage'; id: string }
  | { type: 'copy'; text: string }
  | { type: 'insert'; text: string };

/** Thrown by the parsers; the message names the field that is wrong. */
export class MessageError extends Error {
  override name = 'MessageError';
}

const { record, array, string, nonEmptyString, nonNegative, count, oneOf, patchFates } = fieldReaders(
  (message) => new MessageError(message),
);

// What a page may send, each field bounded (a page is read as hostile): at least what the composer sends, which checks
// a question's length before it sends it (so the typed question stays in its box) and sends at most
// MAX_IMAGES_PER_QUESTION images a paste, the files past them refused in one reason.

/** The longest question: pages of text, more than any model's context holds. */
export const MAX_QUESTION_CHARS = 100_000;
/** The longest text to copy or insert: an answer at the longest (4096 tokens of up to 256 characters each), and more. */
export const MAX_TEXT_CHARS = 4 * 1024 * 1024;
/** Turn and image ids are the extension's own (`turn-<UUID>`, `image-12`). */
const MAX_ID_CHARS = 128;
/** A file's name; file systems take 255 bytes. */
const MAX_NAME_CHARS = 1024;
/** Why a file was not read: its name and a sentence. */
const MAX_REASON_CHARS = 4096;
/** The files a paste or drop refuses: one each for the images a question takes, and one for the rest. */
export const MAX_REFUSED = MAX_IMAGES_PER_QUESTION + 1;
/** The URIs of one drop from the Explorer; the extension reads as many as the question has room for. */
export const MAX_DROPPED_URIS = 1024;
const MAX_URI_CHARS = 8192;
/** An image of MAX_IMAGE_BYTES, base64. */
const MAX_IMAGE_BASE64_CHARS = Math.ceil(MAX_IMAGE_BYTES / 3) * 4;

/** An array of at most `most` entries. */
function boundedArray(value: unknown, field: string, most: number): unknown[] {
  const entries = array(value, field);
  if (entries.length > most)
    throw new MessageError(`${field} has ${entries.length} entries; at most ${most} are read.`);
  return entries;
}

/** Which reply of which turn a message is about. */
function replyOf(message: Record<string, unknown>): { turnId: string; reply: ReplyKind } {
  return {
    turnId: nonEmptyString(message.turnId, 'turnId'),
    reply: oneOf<ReplyKind>(message.reply, 'reply', REPLY_KINDS),
  };
}

export function parseHostMessage(value: unknown): HostMessage {
  const message = record(value, 'message');
  switch (message.type) {
    case 'state':
      return {
        type: 'state',
        turns: array(message.turns, 'turns').map((turn, i) => parseTurn(turn, `turns[${i}]`)),
        pending: parsePending(message.pending, 'pending'),
        ...(message.notice === undefined ? {} : { notice: string(message.notice, 'notice') }),
      };
    case 'turnAdded':
    case 'turnUpdated':
      return { type: message.type, turn: parseTurn(message.turn, 'turn') };
    case 'replyText':
      return { type: 'replyText', ...replyOf(message), text: string(message.text, 'text') };
    case 'replyProgress':
      return { type: 'replyProgress', ...replyOf(message), label: string(message.label, 'label') };
    case 'pending':
      return { type: 'pending', pending: parsePending(message.pending, 'pending') };
    case 'notice':
      return { type: 'notice', message: string(message.message, 'message') };
    case 'questionHeld':
      return {
        type: 'questionHeld',
        question: string(message.question, 'question'),
        message: string(message.message, 'message'),
      };
    default:
      throw new MessageError(
        `message type is ${describeValue(message.type)}; expected state, turnAdded, turnUpdated, replyText, ` +
          `replyProgress, pending, notice or questionHeld.`,
      );
  }
}

export function parseWebviewMessage(value: unknown): WebviewMessage {
  const message = record(value, 'message');
  switch (message.type) {
    case 'ready':
    case 'newChat':
    case 'attach':
      return { type: message.type };
    case 'ask':
      return { type: 'ask', question: string(message.question, 'question', MAX_QUESTION_CHARS) };
    case 'stop':
    case 'compare':
      return { type: message.type, turnId: nonEmptyString(message.turnId, 'turnId', MAX_ID_CHARS) };
    case 'addImages':
      return {
        type: 'addImages',
        images: boundedArray(message.images, 'images', MAX_IMAGES_PER_QUESTION).map((image, i) => {
          const file = record(image, `images[${i}]`);
          return {
            name: nonEmptyString(file.name, `images[${i}].name`, MAX_NAME_CHARS),
            dataBase64: string(file.dataBase64, `images[${i}].dataBase64`, MAX_IMAGE_BASE64_CHARS),
          };
        }),
        refused: boundedArray(message.refused, 'refused', MAX_REFUSED).map((reason, i) =>
          nonEmptyString(reason, `refused[${i}]`, MAX_REASON_CHARS),
        ),
      };
    case 'addUris':
      return {
        type: 'addUris',
        uris: boundedArray(message.uris, 'uris', MAX_DROPPED_URIS).map((uri, i) => absoluteUri(uri, `uris[${i}]`)),
      };
    case 'removeImage':
      return { type: 'removeImage', id: nonEmptyString(message.id, 'id', MAX_ID_CHARS) };
    case 'copy':
    case 'insert':
      return { type: message.type, text: string(message.text, 'text', MAX_TEXT_CHARS) };
    default:
      throw new MessageError(
        `message type is ${describeValue(message.type)}; expected ready, ask, stop, compare, newChat, ` +
          `attach, addImages, addUris, removeImage, copy or insert.`,
      );
  }
}

/** A URI with its scheme (RFC 3986: a letter, then letters, digits, +, - or .), as vscode.Uri.parse needs it. */
function absoluteUri(value: unknown, field: string): string {
  const uri = nonEmptyString(value, field, MAX_URI_CHARS);
  if (!/^[a-z][a-z0-9+.-]*:/i.test(uri))
    throw new MessageError(
      `${field} is ${describeValue(uri)}; expected a URI with a scheme, e.g. file:///home/me/shot.png.`,
    );
  return uri;
}

/** One turn as a page draws it; the store of the chat reads its saved turns with it too. */
export function parseTurn(value: unknown, field: string): Turn {
  const turn = record(value, field);
  const parsed: Turn = {
    id: nonEmptyString(turn.id, `${field}.id`, MAX_ID_CHARS),
    question: string(turn.question, `${field}.question`),
    images: array(turn.images, `${field}.images`).map((image, i) => parseImage(image, `${field}.images[${i}]`)),
    answer: parseReply(turn.answer, `${field}.answer`),
  };
  if (turn.full !== undefined) parsed.full = parseReply(turn.full, `${field}.full`);
  return parsed;
}

function parseReply(value: unknown, field: string): Reply {
  const reply = record(value, field);
  const parsed: Reply = {
    text: string(reply.text, `${field}.text`),
    status: oneOf<ReplyStatus>(reply.status, `${field}.status`, REPLY_STATUSES),
  };
  if (reply.stopReason !== undefined)
    parsed.stopReason = oneOf<AnswerStopReason>(reply.stopReason, `${field}.stopReason`, STOP_REASONS);
  if (reply.stats !== undefined) parsed.stats = parseStats(reply.stats, `${field}.stats`);
  if (reply.error !== undefined) parsed.error = string(reply.error, `${field}.error`);
  if (reply.progress !== undefined) parsed.progress = string(reply.progress, `${field}.progress`);
  if (reply.stopping === true) parsed.stopping = true;
  return parsed;
}

function parsePending(value: unknown, field: string): PendingImage[] {
  return array(value, field).map((image, i) => ({
    id: nonEmptyString(record(image, `${field}[${i}]`).id, `${field}[${i}].id`),
    ...parseImage(image, `${field}[${i}]`),
  }));
}

function parseImage(value: unknown, field: string): TurnImage {
  const image = record(value, field);
  const parsed: TurnImage = { name: string(image.name, `${field}.name`) };
  if (image.src !== undefined) {
    const src = string(image.src, `${field}.src`);
    // The webview sets it as an <img> source: only images inlined as data.
    if (!INLINE_IMAGE.test(src)) throw new MessageError(`${field}.src is not a data:image URL.`);
    parsed.src = src;
  }
  if (image.notKept === true) parsed.notKept = true;
  return parsed;
}

function parseStats(value: unknown, field: string): AnswerStatsView {
  const stats = record(value, field);
  const parsed: AnswerStatsView = {
    visualTokens: array(stats.visualTokens, `${field}.visualTokens`).map((entry, i) => {
      const tokens = record(entry, `${field}.visualTokens[${i}]`);
      return {
        original: count(tokens.original, `${field}.visualTokens[${i}].original`),
        atDecoder: count(tokens.atDecoder, `${field}.visualTokens[${i}].atDecoder`),
      };
    }),
    visionMs: nonNegative(stats.visionMs, `${field}.visionMs`),
    prefillMs: nonNegative(stats.prefillMs, `${field}.prefillMs`),
    ttftMs: nonNegative(stats.ttftMs, `${field}.ttftMs`),
    generatedTokens: count(stats.generatedTokens, `${field}.generatedTokens`),
    decodeTokensPerSecond: nonNegative(stats.decodeTokensPerSecond, `${field}.decodeTokensPerSecond`),
    provider: nonEmptyString(stats.provider, `${field}.provider`),
  };
  if (stats.providerFallback !== undefined)
    parsed.providerFallback = nonEmptyString(stats.providerFallback, `${field}.providerFallback`);
  if (stats.reduction !== undefined) {
    const reduction = record(stats.reduction, `${field}.reduction`);
    parsed.reduction = {
      method: nonEmptyString(reduction.method, `${field}.reduction.method`),
      budget: nonEmptyString(reduction.budget, `${field}.reduction.budget`),
      rule: oneOf<ReductionRule>(reduction.rule, `${field}.reduction.rule`, REDUCTION_RULES),
      why: string(reduction.why, `${field}.reduction.why`),
    };
  }
  if (stats.flopsRatio !== undefined) parsed.flopsRatio = nonNegative(stats.flopsRatio, `${field}.flopsRatio`);
  if (stats.speedup !== undefined) parsed.speedup = parseSpeedup(stats.speedup, `${field}.speedup`);
  if (stats.measuringSpeedup === true) parsed.measuringSpeedup = true;
  if (stats.historyTrimmed !== undefined) {
    const trimmed = record(stats.historyTrimmed, `${field}.historyTrimmed`);
    parsed.historyTrimmed = {
      droppedMessages: count(trimmed.droppedMessages, `${field}.historyTrimmed.droppedMessages`),
      contextTokens: count(trimmed.contextTokens, `${field}.historyTrimmed.contextTokens`),
    };
  }
  if (stats.seed !== undefined) parsed.seed = count(stats.seed, `${field}.seed`, MAX_SEED);
  if (stats.imageReductions !== undefined) {
    parsed.imageReductions = array(stats.imageReductions, `${field}.imageReductions`).map((entry, i) =>
      patchFates(entry, `${field}.imageReductions[${i}]`),
    );
  }
  return parsed;
}

function parseSpeedup(value: unknown, field: string): SpeedupView {
  const speedup = record(value, field);
  return {
    ratio: nonNegative(speedup.ratio, `${field}.ratio`),
    low: nonNegative(speedup.low, `${field}.low`),
    high: nonNegative(speedup.high, `${field}.high`),
    pairs: count(speedup.pairs, `${field}.pairs`),
    verdict: oneOf<SpeedupVerdict>(speedup.verdict, `${field}.verdict`, SPEEDUP_VERDICTS),
    label: nonEmptyString(speedup.label, `${field}.label`),
    timed: nonEmptyString(speedup.timed, `${field}.timed`),
  };
}
