/**
 * The conversation as the extension keeps it: the source of truth the webview is redrawn from.
 * Each change returns the message that tells the webview about it. Free of 'vscode' so it is plainly testable.
 */
import type { AnswerStatsView, AnswerStopReason, HostMessage, Turn, TurnImage } from '../protocol/webview';

export class Transcript {
  private readonly turns: Turn[] = [];
  private nextId = 1;

  /** Everything so far, for a webview that has just (re)loaded. */
  snapshot(): HostMessage {
    return { type: 'transcript', turns: this.turns.map((turn) => structuredClone(turn)) };
  }

  addTurn(question: string, images: TurnImage[]): { turnId: string; message: HostMessage } {
    const turn: Turn = { id: `turn-${this.nextId++}`, question, images, answer: '', status: 'waiting' };
    this.turns.push(turn);
    return { turnId: turn.id, message: { type: 'turnAdded', turn: structuredClone(turn) } };
  }

  appendText(turnId: string, text: string): HostMessage {
    const turn = this.turn(turnId);
    turn.answer += text;
    turn.status = 'streaming';
    return { type: 'answerText', turnId, text };
  }

  finish(turnId: string, stopReason: AnswerStopReason, stats?: AnswerStatsView): HostMessage {
    const turn = this.turn(turnId);
    turn.status = 'done';
    turn.stopReason = stopReason;
    if (stats) turn.stats = statsView(stats);
    return turn.stats ? { type: 'answerDone', turnId, stopReason, stats: turn.stats } : { type: 'answerDone', turnId, stopReason };
  }

  fail(turnId: string, message: string): HostMessage {
    const turn = this.turn(turnId);
    turn.status = 'error';
    turn.error = message;
    return { type: 'answerError', turnId, message };
  }

  private turn(turnId: string): Turn {
    const turn = this.turns.find((candidate) => candidate.id === turnId);
    if (!turn) throw new Error(`No turn ${turnId} in the transcript.`);
    return turn;
  }
}

/** Only the fields the webview shows, so the engine's per-step details stay in the extension. */
export function statsView(stats: AnswerStatsView): AnswerStatsView {
  const view: AnswerStatsView = {
    visualTokens: stats.visualTokens.map(({ original, atDecoder }) => ({ original, atDecoder })),
    visionMs: stats.visionMs,
    prefillMs: stats.prefillMs,
    ttftMs: stats.ttftMs,
    generatedTokens: stats.generatedTokens,
    decodeTokensPerSecond: stats.decodeTokensPerSecond,
    provider: stats.provider,
  };
  if (stats.providerFallback !== undefined) view.providerFallback = stats.providerFallback;
  return view;
}

const IMAGE_MIME_TYPES: Record<string, string> = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif' };

/** Largest image shown inline as a data: URL; the transcript keeps it and re-sends it on every webview reload. */
export const MAX_PREVIEW_BYTES = 4 * 1024 * 1024;

/** The image as the webview shows it: inlined as a data: URL when it is a known type and small enough. */
export function turnImage(name: string, bytes: Uint8Array): TurnImage {
  const mime = IMAGE_MIME_TYPES[name.slice(name.lastIndexOf('.') + 1).toLowerCase()];
  if (!mime || bytes.byteLength > MAX_PREVIEW_BYTES) return { name };
  return { name, src: `data:${mime};base64,${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}` };
}
