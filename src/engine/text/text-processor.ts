import path from 'node:path';
import vm from 'node:vm';
import { Tokenizer } from '@huggingface/tokenizers';
import { FicocoError } from '../../common/errors';
import { loadChatTemplate, type ChatMessage, type ChatTemplate, type TemplateTokens } from './chat-template';
import { isJsonObject, readOptionalJson, tokenContent, type JsonObject } from './json-file';

/** How the model marks the image in the prompt: the id from config.json (image_token_index) or the token text. */
export type ImageTokenRef = { id: number } | { text: string };

const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'pad_token', 'unk_token'] as const;

/**
 * The most characters one token may stand for. Released vocabularies' longest tokens are runs of a few dozen to a few
 * hundred characters; an answer of 4096 tokens of 400,000 characters each would not fit in a string.
 */
export const MAX_TOKEN_CHARS = 4096;

/**
 * How many times longer tokenizer.json's normalizer and pre-tokenizer together, or its decoder, may make a text.
 * Released tokenizers reach 4 (byte-level: a character becomes up to three, and a space before it); a Replace of every
 * position by a long text would make a prompt, or a few tokens, more text than memory holds.
 */
export const MAX_TEXT_GROWTH = 16;

/** Encoding a prompt (up to the template's 4 Mi characters) takes seconds at most; decoding a few tokens, far less. */
const TOKENIZER_TIMEOUT_MS = 30_000;

// tokenizer.json's regular expressions come from the model folder, and one can take exponential time: its calls run
// as vm calls, whose timeout stops a regular expression too (about 60 µs a call).
const guard = vm.createContext({ run: (): unknown => undefined }) as { run: () => unknown };
const guardedCall = new vm.Script('run()');

/** `run()`, or the model folder's fault once it has taken `timeoutMs`. */
function withinTime<T>(tokenizerFile: string, what: string, timeoutMs: number, run: () => T): T {
  guard.run = run;
  try {
    return guardedCall.runInContext(guard, { timeout: timeoutMs }) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ERR_SCRIPT_EXECUTION_TIMEOUT') throw error;
    throw new FicocoError(
      `${tokenizerFile} took more than ${timeoutMs / 1000} s to ${what} (one of its patterns runs away?); this ` +
        'model folder cannot be used as is.',
      'config',
    );
  } finally {
    guard.run = () => undefined;
  }
}

export interface TextLoadOptions {
  /** the rows of the model's embedding table, which every id the tokenizer gives must be below */
  vocabSize?: number;
  /** how long encoding a prompt, or decoding a few tokens, may take (default TOKENIZER_TIMEOUT_MS) */
  tokenizerTimeoutMs?: number;
}

/** Tokenizer and chat template of a Hugging Face model folder. */
export class TextProcessor {
  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly template: ChatTemplate,
    private readonly templateTokens: TemplateTokens,
    private readonly tokenizerFile: string,
    readonly imageTokenId: number,
    /** the image token's text ("<image>"), which marks where an image goes in a rendered prompt */
    private readonly imageTokenText: string,
    /** eos ids from tokenizer_config.json, generation_config.json and config.json, without duplicates */
    readonly stopTokenIds: number[],
    private readonly tokenizerTimeoutMs: number,
    /** whether decoding runs one of tokenizer.json's regular expressions (a Replace decoder's), which is then timed */
    private readonly decodeRunsPatterns: boolean,
  ) {}

  /**
   * Synchronous: everything read is small JSON, and the engine process loads a model before answering anyway.
   */
  static load(modelDir: string, imageToken: ImageTokenRef, options: TextLoadOptions = {}): TextProcessor {
    const { vocabSize, tokenizerTimeoutMs = TOKENIZER_TIMEOUT_MS } = options;
    const tokenizerFile = path.join(modelDir, 'tokenizer.json');
    const tokenizerJson = readOptionalJson(modelDir, 'tokenizer.json');
    if (tokenizerJson === undefined) {
      throw new FicocoError(
        `${modelDir} lacks tokenizer.json (the Hugging Face fast tokenizer file); this model folder cannot be used.`,
        'model-folder',
      );
    }
    if (vocabSize !== undefined) {
      const ids = tokenIdRange(tokenizerJson);
      if (ids.lowest < 0 || ids.highest >= vocabSize)
        throw new FicocoError(
          `${tokenizerFile} gives token ids from ${ids.lowest} to ${ids.highest}, and config.json's vocab_size is ` +
            `${vocabSize} (ids 0 to ${vocabSize - 1}): the tokenizer does not belong to this model.`,
          'config',
        );
    }
    checkTextSizes(tokenizerJson, tokenizerFile);
    const tokenizerConfig = readOptionalJson(modelDir, 'tokenizer_config.json') ?? {};
    const templateTokens = readTemplateTokens(tokenizerConfig);
    const tokenizer = createTokenizer(tokenizerJson, tokenizerConfig, templateTokens, tokenizerFile);
    const template = loadChatTemplate(modelDir, tokenizerConfig);
    const image = resolveImageToken(tokenizer, imageToken, tokenizerFile, tokenizerTimeoutMs);
    const stopTokenIds = collectStopTokenIds(modelDir, tokenizer, templateTokens.eos_token);
    return new TextProcessor(
      tokenizer,
      template,
      templateTokens,
      tokenizerFile,
      image.id,
      image.text,
      stopTokenIds,
      tokenizerTimeoutMs,
      JSON.stringify(tokenizerJson['decoder'] ?? null).includes('"Regex"'),
    );
  }

  /** Parses the chat template (in its own process): a FicocoError when it cannot be used. */
  checkTemplate(): Promise<void> {
    return this.template.check();
  }

  /**
   * The message with the image token's text in its text split by a word joiner (U+2060): only image parts mark images.
   * An answer about HTML that spells "<image>" would otherwise become a placeholder without an image, and every
   * question after it fail.
   */
  withoutImageMarks(message: ChatMessage): ChatMessage {
    const mark = this.imageTokenText;
    const split = `${mark.slice(0, 1)}\u2060${mark.slice(1)}`;
    const plain = (text: string) => text.replaceAll(mark, split);
    const { content } = message;
    return {
      ...message,
      content:
        typeof content === 'string'
          ? plain(content)
          : content.map((part) => (part.type === 'text' ? { ...part, text: plain(part.text) } : part)),
    };
  }

  /** renders the model's chat template with add_generation_prompt */
  renderPrompt(messages: ChatMessage[]): Promise<string> {
    return this.template.render(messages, this.templateTokens);
  }

  /** Stops the chat template's rendering process. */
  dispose(): void {
    this.template.dispose();
  }

  /** Token ids of `text`, with BOS etc. added as the tokenizer's post-processor says. */
  encode(text: string): number[] {
    const { ids, tokens } = withinTime(this.tokenizerFile, 'encode a prompt', this.tokenizerTimeoutMs, () =>
      this.tokenizer.encode(text),
    );
    const missing = ids.findIndex((id) => !Number.isInteger(id));
    if (missing >= 0) {
      throw new FicocoError(
        `${this.tokenizerFile} has no id for "${tokens[missing]}" and no unk_token to fall back on; the ` +
          `tokenizer is incomplete.`,
        'config',
      );
    }
    // Templates that write {{ bos_token }} themselves would otherwise get a second BOS from the post-processor.
    const bos = this.templateTokens.bos_token;
    if (
      bos !== undefined &&
      text.startsWith(bos) &&
      ids.length >= 2 &&
      ids[0] === ids[1] &&
      ids[0] === this.tokenizer.token_to_id(bos)
    ) {
      return ids.slice(1);
    }
    return ids;
  }

  /** Text of `ids`, special tokens skipped. */
  decode(ids: number[]): string {
    if (ids.length === 0) return ''; // tokenizers.js throws on an empty list
    const decode = () => this.tokenizer.decode(ids, { skip_special_tokens: true });
    // A guarded call costs about 60 µs, twice a token: only where a pattern could run away.
    return this.decodeRunsPatterns
      ? withinTime(this.tokenizerFile, 'decode tokens', this.tokenizerTimeoutMs, decode)
      : decode();
  }

  /** The vocabulary entry of one id, as stored (e.g. "▁world", "Ġworld", "<0xE4>"). */
  tokenText(id: number): string {
    const text = this.tokenizer.id_to_token(id);
    if (text === undefined) {
      throw new FicocoError(`Token id ${id} is not in the vocabulary of ${this.tokenizerFile}.`, 'input');
    }
    return text;
  }
}

/** bos/eos/pad/unk as plain strings (tokenizer_config.json may store AddedToken objects). */
function readTemplateTokens(tokenizerConfig: JsonObject): TemplateTokens {
  const tokens: TemplateTokens = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const content = tokenContent(tokenizerConfig[key]);
    if (content !== undefined) tokens[key] = content;
  }
  return tokens;
}

function createTokenizer(
  tokenizerJson: JsonObject,
  tokenizerConfig: JsonObject,
  tokens: TemplateTokens,
  tokenizerFile: string,
): Tokenizer {
  const model = tokenizerJson['model'];
  // tokenizers.js has no WordLevel model: it falls back to its Legacy vocab lookup, which takes unk_token
  // from the config (not from the model) and needs it as a string.
  const wordLevelUnk =
    isJsonObject(model) && model['type'] === 'WordLevel' ? tokenContent(model['unk_token']) : undefined;
  const config = {
    ...tokenizerConfig,
    ...tokens,
    ...(wordLevelUnk === undefined ? {} : { unk_token: wordLevelUnk }),
    additional_special_tokens: toStringList(tokenizerConfig['additional_special_tokens']),
  };
  try {
    return new Tokenizer({ ...tokenizerJson, added_tokens: tokenizerJson['added_tokens'] ?? [] }, config);
  } catch (error) {
    throw new FicocoError(
      `${tokenizerFile} could not be loaded (${(error as Error).message}); this model folder cannot be used.`,
      'config',
    );
  }
}

/** The ids tokenizer.json gives: its model's vocabulary (token → id, or Unigram's list by position) and added tokens. */
function tokenIdRange(tokenizerJson: JsonObject): { lowest: number; highest: number } {
  let [lowest, highest] = [0, 0];
  for (const { id } of vocabulary(tokenizerJson))
    if (typeof id === 'number') {
      lowest = Math.min(lowest, id);
      highest = Math.max(highest, id);
    }
  return { lowest, highest };
}

/**
 * Every token tokenizer.json names, its text and id as the file has them (the callers check their types): its model's
 * vocabulary (texts to ids, or Unigram's [piece, score] list, whose ids are the positions) and its added tokens.
 */
function* vocabulary(tokenizerJson: JsonObject): Generator<{ text: unknown; id: unknown }> {
  const model = tokenizerJson['model'];
  const vocab = isJsonObject(model) ? model['vocab'] : undefined;
  if (Array.isArray(vocab))
    for (const [id, entry] of vocab.entries()) yield { text: Array.isArray(entry) ? entry[0] : undefined, id };
  else if (isJsonObject(vocab)) for (const [text, id] of Object.entries(vocab)) yield { text, id };
  const added = tokenizerJson['added_tokens'];
  if (Array.isArray(added))
    for (const token of added) if (isJsonObject(token)) yield { text: token['content'], id: token['id'] };
}

/**
 * Refuses a tokenizer.json whose tokens, or whose text steps, would make more text than memory holds: a token longer
 * than MAX_TOKEN_CHARS, or a normalizer and pre-tokenizer (or a decoder) that may grow a text more than
 * MAX_TEXT_GROWTH times.
 */
function checkTextSizes(tokenizerJson: JsonObject, tokenizerFile: string): void {
  const refuse = (what: string) =>
    new FicocoError(`${tokenizerFile} ${what}; this model folder cannot be used as is.`, 'config');
  let longest = '';
  for (const { text } of vocabulary(tokenizerJson))
    if (typeof text === 'string' && text.length > longest.length) longest = text;
  if (longest.length > MAX_TOKEN_CHARS)
    throw refuse(
      `has a token of ${longest.length} characters (${JSON.stringify(longest.slice(0, 24))}…), where tokens have ` +
        `at most ${MAX_TOKEN_CHARS}`,
    );
  const steps = {
    'normalizer and pre-tokenizer':
      textGrowth(tokenizerJson['normalizer']) * textGrowth(tokenizerJson['pre_tokenizer']),
    decoder: textGrowth(tokenizerJson['decoder']),
  };
  for (const [what, growth] of Object.entries(steps))
    if (growth > MAX_TEXT_GROWTH)
      throw refuse(
        `has a ${what} that may make a text ${growth > 1e6 ? 'millions of' : Math.ceil(growth)} times longer ` +
          `(Replace, Prepend or Metaspace texts; at most ${MAX_TEXT_GROWTH} times)`,
      );
}

/**
 * How many times longer one step of tokenizer.json (a normalizer, pre-tokenizer or decoder) may make a text, at most:
 * a Sequence multiplies its steps'. Conservative: a regular expression may match nothing, so at every position.
 */
function textGrowth(step: unknown): number {
  if (!isJsonObject(step)) return 1;
  const chars = (value: unknown) => (typeof value === 'string' ? value.length : 0);
  switch (step['type']) {
    case 'Sequence': {
      const steps = step['normalizers'] ?? step['pretokenizers'] ?? step['decoders'];
      return Array.isArray(steps) ? steps.reduce((product: number, part) => product * textGrowth(part), 1) : 1;
    }
    case 'Replace': {
      const pattern = step['pattern'];
      const matched = isJsonObject(pattern) ? chars(pattern['String']) : 0;
      const content = chars(step['content']);
      return matched > 0 ? Math.max(1, content / matched) : content + 1;
    }
    case 'Prepend':
      return 1 + chars(step['prepend']);
    case 'Metaspace':
      // A space becomes the replacement, and a piece may start with one more.
      return 2 * Math.max(1, chars(step['replacement']));
    case 'ByteLevel':
      // A character becomes its UTF-8 bytes' characters (up to three per UTF-16 unit), a piece may get a space first.
      return 4;
    case 'BertNormalizer':
      // Chinese characters get a space on each side.
      return 3;
    case 'BPEDecoder':
    case 'CTC':
      // An empty suffix or word delimiter, replaced by a space, would put one between every two characters.
      return 2;
    default:
      // The others remove, split, fuse or normalize Unicode (whose expansions are bounded): none writes texts of its own.
      return 1;
  }
}

function toStringList(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  return value.map(tokenContent).filter((content): content is string => content !== undefined);
}

function resolveImageToken(
  tokenizer: Tokenizer,
  imageToken: ImageTokenRef,
  tokenizerFile: string,
  timeoutMs: number,
): { id: number; text: string } {
  const text = 'id' in imageToken ? tokenizer.id_to_token(imageToken.id) : imageToken.text;
  const id = 'id' in imageToken ? imageToken.id : tokenizer.token_to_id(imageToken.text);
  if (text === undefined || id === undefined) {
    const which = 'id' in imageToken ? `id ${imageToken.id}` : `"${imageToken.text}"`;
    throw new FicocoError(
      `The image token ${which} is not in the vocabulary of ${tokenizerFile}; the tokenizer does not ` +
        `belong to this model.`,
      'config',
    );
  }
  // The prompt marks the image with the token's text, so that text must encode to exactly this one id.
  const encoded = withinTime(
    tokenizerFile,
    'encode the image token',
    timeoutMs,
    () => tokenizer.encode(text, { add_special_tokens: false }).ids,
  );
  if (encoded.length !== 1 || encoded[0] !== id) {
    throw new FicocoError(
      `The image token "${text}" (id ${id}) is not an added token in ${tokenizerFile}: the prompt text ` +
        `"${text}" encodes to [${encoded.join(', ')}], ` +
        'so the image position would be lost; the tokenizer does not belong to this model.',
      'config',
    );
  }
  return { id, text };
}

function collectStopTokenIds(modelDir: string, tokenizer: Tokenizer, eosToken: string | undefined): number[] {
  const ids: number[] = [];
  const eosId = eosToken === undefined ? undefined : tokenizer.token_to_id(eosToken);
  if (eosId !== undefined) ids.push(eosId);
  const generationConfig = readOptionalJson(modelDir, 'generation_config.json');
  const config = readOptionalJson(modelDir, 'config.json');
  // LLaVA configs keep the language model's ids under text_config.
  const textConfig = isJsonObject(config?.['text_config']) ? config['text_config'] : undefined;
  // One by one: a list of a million ids spread into push() overflows the stack.
  for (const source of [generationConfig, config, textConfig]) for (const id of eosIdsOf(source)) ids.push(id);
  return [...new Set(ids)];
}

/** eos_token_id may be a number, a list of numbers, or absent / null. */
function eosIdsOf(config: JsonObject | undefined): number[] {
  const value = config?.['eos_token_id'];
  const list = Array.isArray(value) ? value : [value];
  return list.filter((id): id is number => Number.isInteger(id));
}
