/**
 * OpenAI's `stop`: the answer ends before the first of these strings. Text arrives in pieces, so the tail that could
 * still grow into a stop string is held back until the next piece decides it.
 */
export class StopStrings {
  private held = '';
  private stoppedAt = false;

  constructor(private readonly stops: readonly string[]) {}

  /** true once a stop string was seen: nothing more is released */
  get stopped(): boolean {
    return this.stoppedAt;
  }

  /** The text that can be sent now. */
  push(piece: string): string {
    if (this.stoppedAt) return '';
    const text = this.held + piece;
    const cut = firstStop(text, this.stops);
    if (cut !== undefined) {
      this.stoppedAt = true;
      this.held = '';
      return text.slice(0, cut);
    }
    const keep = longestStopPrefixAtEnd(text, this.stops);
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** What is still held back once the answer ended without a stop string. */
  flush(): string {
    const rest = this.stoppedAt ? '' : this.held;
    this.held = '';
    return rest;
  }
}

/** Where the earliest stop string starts in `text`, if any. */
function firstStop(text: string, stops: readonly string[]): number | undefined {
  let first: number | undefined;
  for (const stop of stops) {
    const at = text.indexOf(stop);
    if (at >= 0 && (first === undefined || at < first)) first = at;
  }
  return first;
}

/** The length of the longest end of `text` that is the start of a stop string (and not a whole one). */
function longestStopPrefixAtEnd(text: string, stops: readonly string[]): number {
  let longest = 0;
  for (const stop of stops)
    for (let length = Math.min(stop.length - 1, text.length); length > longest; length--)
      if (text.endsWith(stop.slice(0, length))) {
        longest = length;
        break;
      }
  return longest;
}
