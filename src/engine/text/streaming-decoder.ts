import type { TextProcessor } from './text-processor';

const REPLACEMENT_CHARACTER = '\uFFFD';
/** More held-back ids than a UTF-8 character takes (4 byte-fallback pieces), with room to spare. */
const MAX_HELD_IDS = 16;

/**
 * Turns generated ids into text increments. Decodes a short window (the last emitted token(s) plus the
 * new ones) and emits only what the new ids added, so decoders that strip a leading space or join
 * byte-fallback pieces behave as on the whole text, at constant cost per token. Holds back output that
 * ends in an incomplete UTF-8 sequence (shown by the decoder as U+FFFD) until the next id completes it, for up to
 * MAX_HELD_IDS ids.
 */
export class StreamingDecoder {
  private readonly ids: number[] = [];
  /** start of the window that is decoded for context only */
  private prefixOffset = 0;
  /** ids before this index have been emitted */
  private readOffset = 0;

  constructor(private readonly text: TextProcessor) {}

  /** new text since last call; holds back an incomplete UTF-8 sequence / trailing replacement char */
  push(id: number): string {
    const before = this.text.decode(this.ids.slice(this.prefixOffset));
    this.ids.push(id);
    const windowText = this.text.decode(this.ids.slice(this.prefixOffset));
    // An id that adds nothing, here or alone (a special token, which decoding skips), leaves the window: a run of them
    // would grow it. A byte of a character in the making adds nothing here either, but alone it shows as U+FFFD.
    if (windowText === before && this.text.decode([id]) === '') {
      this.ids.pop();
      return '';
    }
    const prefixText = this.text.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const nothingYet = windowText.length <= prefixText.length || windowText.endsWith(REPLACEMENT_CHARACTER);
    // Past MAX_HELD_IDS the held bytes are not one character in the making: they go out as the decoder shows them.
    if (nothingYet && this.ids.length - this.readOffset < MAX_HELD_IDS) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return windowText.slice(prefixText.length);
  }

  /** Whatever is still held back (e.g. a sequence the model never completed), at the end of generation. */
  flush(): string {
    const prefixText = this.text.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const windowText = this.text.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return windowText.slice(prefixText.length);
  }
}
