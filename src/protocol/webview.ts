/**
 * Messages between the extension and its FiCoCo webview (postMessage, structured clone of plain data).
 * The extension owns the transcript; the webview only draws it. When the webview (re)loads it says
 * `ready` and the extension answers with the whole transcript, then streams changes turn by turn.
 *
 * The webview bundle includes this file, so it imports only plain helpers: no Node, vscode or engine code.
 */
import { describeValue } from './describe';

/** How an answer ended; the engine's StopReason. */
export type AnswerStopReason = 'stop-token' | 'max-tokens' | 'cancelled';
const STOP_REASONS: readonly string[] = ['stop-token', 'max-tokens', 'cancelled'];

/** The part of the engine's AnswerStats the webview shows; AnswerStats is assignable to it. */
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
  providerFallback?: string;
}

export type TurnStatus = 'waiting' | 'streaming' | 'done' | 'error';
const TURN_STATUSES: readonly string[] = ['waiting', 'streaming', 'done', 'error'];

export interface TurnImage {
  /** the file name, also the thumbnail's alt text */
  name: string;
  /** a data: URL or webview resource URL of the image; absent when there is no preview */
  src?: string;
}

/** One question and its answer so far. */
export interface Turn {
  id: string;
  question: string;
  images: TurnImage[];
  /** the answer text received so far (plain text) */
  answer: string;
  status: TurnStatus;
  /** when status is 'done' and the engine measured the answer */
  stats?: AnswerStatsView;
  stopReason?: AnswerStopReason;
  /** when status is 'error' */
  error?: string;
}

/** Extension → webview. */
export type HostMessage =
  | { type: 'transcript'; turns: Turn[] }
  | { type: 'turnAdded'; turn: Turn }
  | { type: 'answerText'; turnId: string; text: string }
  | { type: 'answerDone'; turnId: string; stopReason: AnswerStopReason; stats?: AnswerStatsView }
  | { type: 'answerError'; turnId: string; message: string };

/** Webview → extension. */
export type WebviewMessage = { type: 'ready' } | { type: 'stop'; turnId: string };

/** Thrown by the parsers; the message names the field that is wrong. */
export class MessageError extends Error {
  override name = 'MessageError';
}

export function parseHostMessage(value: unknown): HostMessage {
  const message = record(value, 'message');
  switch (message.type) {
    case 'transcript':
      return { type: 'transcript', turns: array(message.turns, 'turns').map((turn, i) => parseTurn(turn, `turns[${i}]`)) };
    case 'turnAdded':
      return { type: 'turnAdded', turn: parseTurn(message.turn, 'turn') };
    case 'answerText':
      return { type: 'answerText', turnId: nonEmptyString(message.turnId, 'turnId'), text: string(message.text, 'text') };
    case 'answerDone': {
      const done: HostMessage = { type: 'answerDone', turnId: nonEmptyString(message.turnId, 'turnId'), stopReason: stopReason(message.stopReason, 'stopReason') };
      if (message.stats !== undefined) done.stats = parseStats(message.stats, 'stats');
      return done;
    }
    case 'answerError':
      return { type: 'answerError', turnId: nonEmptyString(message.turnId, 'turnId'), message: string(message.message, 'message') };
    default:
      throw new MessageError(`message type is ${describeValue(message.type)}; expected transcript, turnAdded, answerText, answerDone or answerError.`);
  }
}

export function parseWebviewMessage(value: unknown): WebviewMessage {
  const message = record(value, 'message');
  switch (message.type) {
    case 'ready':
      return { type: 'ready' };
    case 'stop':
      return { type: 'stop', turnId: nonEmptyString(message.turnId, 'turnId') };
    default:
      throw new MessageError(`message type is ${describeValue(message.type)}; expected ready or stop.`);
  }
}

function parseTurn(value: unknown, field: string): Turn {
  const turn = record(value, field);
  const status = string(turn.status, `${field}.status`);
  if (!TURN_STATUSES.includes(status)) throw new MessageError(`${field}.status is ${describeValue(status)}; expected one of ${TURN_STATUSES.join(', ')}.`);
  const parsed: Turn = {
    id: nonEmptyString(turn.id, `${field}.id`),
    question: string(turn.question, `${field}.question`),
    images: array(turn.images, `${field}.images`).map((image, i) => parseImage(image, `${field}.images[${i}]`)),
    answer: string(turn.answer, `${field}.answer`),
    status: status as TurnStatus,
  };
  if (turn.stats !== undefined) parsed.stats = parseStats(turn.stats, `${field}.stats`);
  if (turn.stopReason !== undefined) parsed.stopReason = stopReason(turn.stopReason, `${field}.stopReason`);
  if (turn.error !== undefined) parsed.error = string(turn.error, `${field}.error`);
  return parsed;
}

function parseImage(value: unknown, field: string): TurnImage {
  const image = record(value, field);
  const parsed: TurnImage = { name: string(image.name, `${field}.name`) };
  if (image.src !== undefined) {
    const src = string(image.src, `${field}.src`);
    // The webview sets it as an <img> source: only images inlined or served by the webview itself.
    if (!/^(data:image\/|https:\/\/[^/]+\.vscode-cdn\.net\/)/.test(src)) {
      throw new MessageError(`${field}.src is not a data:image URL or a webview resource URL.`);
    }
    parsed.src = src;
  }
  return parsed;
}

function parseStats(value: unknown, field: string): AnswerStatsView {
  const stats = record(value, field);
  const parsed: AnswerStatsView = {
    visualTokens: array(stats.visualTokens, `${field}.visualTokens`).map((entry, i) => {
      const tokens = record(entry, `${field}.visualTokens[${i}]`);
      return { original: count(tokens.original, `${field}.visualTokens[${i}].original`), atDecoder: count(tokens.atDecoder, `${field}.visualTokens[${i}].atDecoder`) };
    }),
    visionMs: nonNegative(stats.visionMs, `${field}.visionMs`),
    prefillMs: nonNegative(stats.prefillMs, `${field}.prefillMs`),
    ttftMs: nonNegative(stats.ttftMs, `${field}.ttftMs`),
    generatedTokens: count(stats.generatedTokens, `${field}.generatedTokens`),
    decodeTokensPerSecond: nonNegative(stats.decodeTokensPerSecond, `${field}.decodeTokensPerSecond`),
    provider: nonEmptyString(stats.provider, `${field}.provider`),
  };
  if (stats.providerFallback !== undefined) parsed.providerFallback = string(stats.providerFallback, `${field}.providerFallback`);
  return parsed;
}

function stopReason(value: unknown, field: string): AnswerStopReason {
  if (typeof value !== 'string' || !STOP_REASONS.includes(value)) {
    throw new MessageError(`${field} is ${describeValue(value)}; expected one of ${STOP_REASONS.join(', ')}.`);
  }
  return value as AnswerStopReason;
}

function record(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new MessageError(`${field} is ${describeValue(value)}; expected an object.`);
  return value as Record<string, unknown>;
}

function array(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) throw new MessageError(`${field} is ${describeValue(value)}; expected an array.`);
  return value;
}

function string(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new MessageError(`${field} is ${describeValue(value)}; expected a string.`);
  return value;
}

function nonEmptyString(value: unknown, field: string): string {
  const text = string(value, field);
  if (text === '') throw new MessageError(`${field} is empty.`);
  return text;
}

function nonNegative(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new MessageError(`${field} is ${describeValue(value)}; expected a number ≥ 0.`);
  return value;
}

function count(value: unknown, field: string): number {
  const number = nonNegative(value, field);
  if (!Number.isInteger(number)) throw new MessageError(`${field} is ${number}; expected a whole number.`);
  return number;
}

