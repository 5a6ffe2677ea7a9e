import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { StreamingDecoder, TextProcessor, type ChatMessage, type ImageTokenRef } from '../../src/engine/text';
import { MAX_TOKEN_CHARS } from '../../src/engine/text/text-processor';
import { MAX_SETTINGS_FILE_BYTES } from '../../src/engine/text/json-file';
import { throwsFicoco } from '../helpers/assertions';
import { ONEVISION_CHAT_TEMPLATE } from '../helpers/hubListings';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-text-'));
const loaded: TextProcessor[] = [];
after(() => {
  fs.rmSync(root, { recursive: true, force: true });
  for (const text of loaded) text.dispose();
});

/** TextProcessor.load for a processor that renders: its chat template's process is stopped after the file's tests. */
function loadForRendering(modelDir: string, imageToken: ImageTokenRef): TextProcessor {
  const text = TextProcessor.load(modelDir, imageToken);
  loaded.push(text);
  return text;
}

let folderCount = 0;
function modelFolder(files: Record<string, unknown>): string {
  const dir = path.join(root, `model-${folderCount++}`);
  fs.mkdirSync(dir);
  for (const [name, content] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

function addedToken(id: number, content: string, special = true) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

function bosTemplateProcessing(bos: string, bosId: number) {
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [
      { SpecialToken: { id: bos, type_id: 0 } },
      { Sequence: { id: 'A', type_id: 0 } },
      { Sequence: { id: 'B', type_id: 1 } },
    ],
    special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
  };
}

/** Pushes ids one by one; returns the increments. */
function stream(text: TextProcessor, ids: number[]): string[] {
  const decoder = new StreamingDecoder(text);
  return [...ids.map((id) => decoder.push(id)), decoder.flush()];
}

const userAsks = (question: string): ChatMessage[] => [
  { role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] },
];

// ---------------------------------------------------------------- word-level, llava-1.5 template

const LLAVA_15_TEMPLATE =
  "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif " +
  "%}{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% elif " +
  "item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}{% if message['role'] == 'user' %} {% " +
  'else %}{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}';

const WORDS = ['<unk>', '<s>', '</s>', 'USER:', 'ASSISTANT:', 'what', 'is', 'this', '?', '<image>', 'a', 'cat', '.'];
const wordId = (word: string): number => WORDS.indexOf(word);

function wordLevelTokenizer() {
  return {
    version: '1.0',
    added_tokens: [addedToken(0, '<unk>'), addedToken(1, '<s>'), addedToken(2, '</s>'), addedToken(9, '<image>')],
    normalizer: null,
    pre_tokenizer: { type: 'WhitespaceSplit' },
    post_processor: bosTemplateProcessing('<s>', 1),
    decoder: null,
    model: { type: 'WordLevel', vocab: Object.fromEntries(WORDS.map((word, id) => [word, id])), unk_token: '<unk>' },
  };
}

function wordLevelFolder(extra: Record<string, unknown> = {}): string {
  return modelFolder({
    'tokenizer.json': wordLevelTokenizer(),
    'tokenizer_config.json': {
      // AddedToken objects, as older transformers write them; unk_token deliberately absent (WordLevel's own is used).
      bos_token: {
        __type: 'AddedToken',
        content: '<s>',
        lstrip: false,
        normalized: false,
        rstrip: false,
        single_word: false,
      },
      eos_token: {
        __type: 'AddedToken',
        content: '</s>',
        lstrip: false,
        normalized: false,
        rstrip: false,
        single_word: false,
      },
      clean_up_tokenization_spaces: false,
      chat_template: LLAVA_15_TEMPLATE,
    },
    'config.json': { model_type: 'llava', image_token_index: 9, text_config: { eos_token_id: 2 } },
    'generation_config.json': { eos_token_id: [2, 12] },
    ...extra,
  });
}

describe('word-level tokenizer with the llava-1.5 template', () => {
  const text = loadForRendering(wordLevelFolder(), { id: 9 });

  test('renders the prompt as transformers does', async () => {
    assert.equal(await text.renderPrompt(userAsks('what is this ?')), 'USER: <image>\nwhat is this ? ASSISTANT:');
    const multiTurn: ChatMessage[] = [
      ...userAsks('what is this ?'),
      { role: 'assistant', content: [{ type: 'text', text: 'a cat .' }] },
      { role: 'user', content: [{ type: 'text', text: 'what is this ?' }] },
    ];
    assert.equal(
      await text.renderPrompt(multiTurn),
      'USER: <image>\nwhat is this ? ASSISTANT: a cat .</s>USER: what is this ? ASSISTANT:',
    );
  });

  test('encodes with BOS from the post-processor, one image token, unk for unknown words', async () => {
    const ids = text.encode(await text.renderPrompt(userAsks('what is this zebra ?')));
    assert.deepEqual(ids, [1, 3, 9, 5, 6, 7, 0, 8, 4]);
    assert.equal(ids.filter((id) => id === text.imageTokenId).length, 1);
    assert.equal(ids.indexOf(text.imageTokenId), 2);
    // "<image>" glued to words is still split out before pre-tokenisation.
    assert.deepEqual(text.encode('what<image>this'), [1, 5, 9, 7]);
  });

  test('image token by id or by text; stop ids from tokenizer_config, generation_config and config', () => {
    assert.equal(text.imageTokenId, 9);
    assert.equal(TextProcessor.load(wordLevelFolder(), { text: '<image>' }).imageTokenId, 9);
    assert.deepEqual(text.stopTokenIds, [2, 12]);
  });

  test('decode joins words with spaces and skips special tokens', () => {
    assert.equal(text.decode([1, 10, 11, 12, 2]), 'a cat .');
    assert.equal(text.decode([3, 9, 5, 0]), 'USER: what'); // <image> and <unk> are special
    assert.equal(text.decode([]), '');
    assert.equal(text.tokenText(11), 'cat');
    throwsFicoco(() => text.tokenText(999), 'input', /Token id 999 is not in the vocabulary of .*tokenizer\.json/);
  });

  test('streaming decode gives the same text, space-separated', () => {
    const ids = [wordId('a'), wordId('cat'), wordId('.'), wordId('</s>')];
    const chunks = stream(text, ids);
    assert.deepEqual(chunks, ['a', ' cat', ' .', '', '']);
    assert.equal(chunks.join(''), text.decode(ids));
  });

  test('unknown image token', () => {
    throwsFicoco(
      () => TextProcessor.load(wordLevelFolder(), { id: 99 }),
      'config',
      /image token id 99 is not in the vocabulary of .*tokenizer\.json/,
    );
    throwsFicoco(
      () => TextProcessor.load(wordLevelFolder(), { text: '<img>' }),
      'config',
      /image token "<img>" is not in the vocabulary/,
    );
  });
});

// ---------------------------------------------------------------- Llama-2 style sentencepiece BPE with byte fallback

const BYTE_TOKENS = Array.from({ length: 256 }, (_, byte) => `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
const LLAMA_PIECES = [
  '▁',
  'h',
  'e',
  'l',
  'o',
  'w',
  'r',
  'd',
  '▁h',
  '▁he',
  'll',
  '▁hell',
  '▁hello',
  '▁w',
  'or',
  '▁wor',
  'ld',
  '▁world',
  '<image>',
];
const LLAMA_VOCAB = ['<unk>', '<s>', '</s>', ...BYTE_TOKENS, ...LLAMA_PIECES];
const llamaId = (token: string): number => LLAMA_VOCAB.indexOf(token);

function llamaTokenizer(imageIsAdded = true) {
  return {
    version: '1.0',
    added_tokens: [
      addedToken(0, '<unk>'),
      addedToken(1, '<s>'),
      addedToken(2, '</s>'),
      ...(imageIsAdded ? [addedToken(llamaId('<image>'), '<image>')] : []),
    ],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    post_processor: bosTemplateProcessing('<s>', 1),
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(LLAMA_VOCAB.map((token, id) => [token, id])),
      merges: ['▁ h', '▁h e', 'l l', '▁he ll', '▁hell o', '▁ w', 'o r', '▁w or', 'l d', '▁wor ld'],
    },
  };
}

const LLAMA_2_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}[INST] {{ " +
  "message['content'] }} [/INST]{% else %} {{ message['content'] }} {{ eos_token }}{% endif %}{% " +
  'endfor %}';

function llamaFolder(files: Record<string, unknown> = {}): string {
  return modelFolder({
    'tokenizer.json': llamaTokenizer(),
    'tokenizer_config.json': {
      bos_token: '<s>',
      eos_token: '</s>',
      unk_token: '<unk>',
      pad_token: null,
      add_bos_token: true,
      clean_up_tokenization_spaces: false,
    },
    'chat_template.jinja': LLAMA_2_CHAT_TEMPLATE,
    ...files,
  });
}

describe('Llama-2 style BPE with byte fallback', () => {
  const text = loadForRendering(llamaFolder(), { text: '<image>' });
  const emojiAndCjk = 'hello 世界 world🙂';
  const expectedIds = [
    1,
    llamaId('▁hello'),
    llamaId('▁'),
    ...[0xe4, 0xb8, 0x96, 0xe7, 0x95, 0x8c].map((byte) => 3 + byte), // 世界
    llamaId('▁world'),
    ...[0xf0, 0x9f, 0x99, 0x82].map((byte) => 3 + byte), // 🙂
  ];

  test('merges, byte fallback and BOS', () => {
    assert.deepEqual(text.encode(emojiAndCjk), expectedIds);
    assert.equal(text.decode(expectedIds), emojiAndCjk);
    assert.equal(text.tokenText(3 + 0xe4), '<0xE4>');
    assert.deepEqual(text.stopTokenIds, [2]);
  });

  test('a template that writes {{ bos_token }} does not get a second BOS', async () => {
    const prompt = await text.renderPrompt([{ role: 'user', content: 'hello' }]);
    assert.equal(prompt, '<s>[INST] hello [/INST]');
    const ids = text.encode(prompt);
    assert.equal(ids[0], 1);
    assert.notEqual(ids[1], 1);
    assert.deepEqual(text.encode('hello world'), [1, llamaId('▁hello'), llamaId('▁world')]);
  });

  test('streaming holds back partial UTF-8 from byte-fallback tokens', () => {
    const chunks = stream(text, expectedIds.slice(1));
    assert.deepEqual(chunks, ['hello', ' ', '', '', '世', '', '', '界', ' world', '', '', '', '🙂', '']);
    assert.ok(chunks.every((chunk) => !chunk.includes('\uFFFD')));
  });

  test('streamed text is the whole decode, however many ids that decode to nothing come between', () => {
    const eos = text.stopTokenIds[0]!;
    const bytes = [0xe4, 0xb8, 0x96].map((byte) => 3 + byte);
    for (const run of [1, 15, 16, 40]) {
      for (const ids of [
        [llamaId('▁hello'), ...Array<number>(run).fill(eos), llamaId('▁world')],
        [llamaId('▁hello'), ...Array<number>(run).fill(eos), ...bytes, llamaId('▁world')],
        [llamaId('▁hello'), bytes[0]!, ...Array<number>(run).fill(eos), bytes[1]!, bytes[2]!, llamaId('▁world')],
      ])
        assert.equal(stream(text, ids).join(''), text.decode(ids), `${run} between`);
    }
  });

  test('a long run of ids that decode to nothing costs the same per id as any other', () => {
    let decodedIds = 0;
    const counting = {
      decode: (ids: number[]) => {
        decodedIds += ids.length;
        return text.decode(ids);
      },
    } as unknown as TextProcessor;
    const decoder = new StreamingDecoder(counting);
    const eos = text.stopTokenIds[0]!;
    for (let i = 0; i < 2000; i++) assert.equal(decoder.push(eos), '');
    assert.equal(decoder.push(llamaId('▁hello')), 'hello');
    assert.ok(decodedIds < 2001 * 64, `${decodedIds} ids decoded for 2,001 pushed`);
  });

  test('flush returns a sequence the model never completed', () => {
    const decoder = new StreamingDecoder(text);
    assert.equal(decoder.push(llamaId('▁hello')), 'hello');
    assert.equal(decoder.push(3 + 0xe4), '');
    assert.equal(decoder.flush(), '\uFFFD');
  });

  test('an image token that is in the vocabulary but not an added token is refused', () => {
    const dir = llamaFolder({ 'tokenizer.json': llamaTokenizer(false) });
    throwsFicoco(
      () => TextProcessor.load(dir, { text: '<image>' }),
      'config',
      /"<image>" \(id \d+\) is not an added token in .*tokenizer\.json/,
    );
  });
});

// ---------------------------------------------------------------- Qwen2 byte-level BPE with ChatML

/** GPT-2's byte → printable character table. */
function byteLevelAlphabet(): string[] {
  const printable = [...range(33, 126), ...range(161, 172), ...range(174, 255)];
  const alphabet: string[] = [];
  let next = 256;
  for (let byte = 0; byte < 256; byte++) {
    alphabet[byte] = String.fromCodePoint(printable.includes(byte) ? byte : next++);
  }
  return alphabet;
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

const BYTE_LEVEL = byteLevelAlphabet();
const QWEN_PIECES = ['he', 'll', 'hell', 'hello', 'Ġw', 'or', 'Ġwor', 'ld', 'Ġworld'];
const QWEN_VOCAB = [...BYTE_LEVEL, ...QWEN_PIECES];
const QWEN_SPECIAL = { endoftext: 300, imStart: 301, imEnd: 302, image: 303 };
const QWEN_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| " +
  '?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';

function qwenTokenizer() {
  return {
    version: '1.0',
    added_tokens: [
      addedToken(QWEN_SPECIAL.endoftext, '<|endoftext|>'),
      addedToken(QWEN_SPECIAL.imStart, '<|im_start|>'),
      addedToken(QWEN_SPECIAL.imEnd, '<|im_end|>'),
      addedToken(QWEN_SPECIAL.image, '<image>'),
    ],
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN_SPLIT_REGEX }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(QWEN_VOCAB.map((token, id) => [token, id])),
      merges: [
        ['h', 'e'],
        ['l', 'l'],
        ['he', 'll'],
        ['hell', 'o'],
        ['Ġ', 'w'],
        ['o', 'r'],
        ['Ġw', 'or'],
        ['l', 'd'],
        ['Ġwor', 'ld'],
      ],
    },
  };
}

const CHATML_TEXT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + " +
  "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% " +
  'endif %}';
const CHATML_PROCESSOR_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}{% if message['content'] " +
  "is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}{% if " +
  "item['type'] == 'image' %}{{ '<image>\n' }}{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% " +
  "endif %}{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' " +
  '}}{% endif %}';

function qwenFolder(files: Record<string, unknown> = {}): string {
  return modelFolder({
    'tokenizer.json': qwenTokenizer(),
    'tokenizer_config.json': {
      bos_token: null,
      eos_token: '<|im_end|>',
      pad_token: '<|endoftext|>',
      unk_token: null,
      chat_template: CHATML_TEXT_TEMPLATE,
    },
    'chat_template.json': { chat_template: CHATML_PROCESSOR_TEMPLATE },
    'generation_config.json': { eos_token_id: [QWEN_SPECIAL.imEnd, QWEN_SPECIAL.endoftext] },
    'config.json': { eos_token_id: QWEN_SPECIAL.endoftext },
    ...files,
  });
}

const bytes = (text: string): number[] => [...Buffer.from(text, 'utf8')];

describe('Qwen2 byte-level BPE with ChatML', () => {
  const text = loadForRendering(qwenFolder(), { id: QWEN_SPECIAL.image });

  test('chat_template.json wins over tokenizer_config.json and renders content lists', async () => {
    const prompt = await text.renderPrompt([
      { role: 'system', content: 'You are helpful.' },
      ...userAsks('hello world'),
    ]);
    assert.equal(
      prompt,
      '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n<image>\nhello ' +
        'world<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  test("llava-onevision-qwen2-0.5b-ov-hf's own template: a conversation with an earlier answer", async () => {
    const onevision = loadForRendering(
      qwenFolder({ 'chat_template.json': { chat_template: ONEVISION_CHAT_TEMPLATE } }),
      {
        id: QWEN_SPECIAL.image,
      },
    );
    const prompt = await onevision.renderPrompt([
      ...userAsks('what is red ?'),
      { role: 'assistant', content: [{ type: 'text', text: 'the dialog' }] },
      { role: 'user', content: [{ type: 'text', text: 'and above it ?' }] },
    ]);
    assert.equal(
      prompt,
      '<|im_start|>user <image>\nwhat is red ?<|im_end|><|im_start|>assistant \nthe dialog<|im_end|>' +
        '<|im_start|>user \nand above it ?<|im_end|><|im_start|>assistant\n',
    );
  });

  test('encodes without BOS, one image token after "user\\n"', async () => {
    const ids = text.encode(await text.renderPrompt(userAsks('hello world')));
    const { imStart, imEnd, image } = QWEN_SPECIAL;
    assert.deepEqual(ids, [
      imStart,
      ...bytes('user\n'),
      image,
      ...bytes('\n'),
      QWEN_VOCAB.indexOf('hello'),
      QWEN_VOCAB.indexOf('Ġworld'),
      imEnd,
      ...bytes('\n'),
      imStart,
      ...bytes('assistant\n'),
    ]);
    assert.equal(ids.filter((id) => id === image).length, 1);
    assert.deepEqual(text.stopTokenIds, [imEnd, QWEN_SPECIAL.endoftext]);
  });

  test(
    'a tokenizer.json pattern that runs away is stopped at the time limit, and the tokenizer is refused',
    { timeout: 60_000 },
    () => {
      const tokenizer = qwenTokenizer();
      // Exponential in the length of a text without \u0001: 2^40 steps for this question.
      const runaway = {
        type: 'Split',
        pattern: { Regex: '([\\s\\S]|[\\s\\S])*\\u0001' },
        behavior: 'Isolated',
        invert: false,
      };
      const dir = qwenFolder({ 'tokenizer.json': { ...tokenizer, pre_tokenizer: runaway } });
      const text = TextProcessor.load(dir, { id: QWEN_SPECIAL.image }, { tokenizerTimeoutMs: 300 });
      const started = performance.now();
      throwsFicoco(
        () => text.encode('what colour is the big box on the left ?'),
        'config',
        /tokenizer\.json took more than 0\.3 s to encode a prompt \(one of its patterns runs away\?\)/,
      );
      // The same pattern in a Replace decoder, which decoding runs on each token: a long added one here.
      const long = {
        id: 304,
        content: 'x'.repeat(48),
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: false,
      };
      const decoding = TextProcessor.load(
        qwenFolder({
          'tokenizer.json': {
            ...tokenizer,
            added_tokens: [...tokenizer.added_tokens, long],
            decoder: { type: 'Replace', pattern: runaway.pattern, content: '' },
          },
        }),
        { id: QWEN_SPECIAL.image },
        { tokenizerTimeoutMs: 300 },
      );
      throwsFicoco(() => decoding.decode([304]), 'config', /took more than 0\.3 s to decode tokens/);
      decoding.dispose();
      assert.ok(performance.now() - started < 10_000);
      text.dispose();
    },
  );

  test("ids the model's embedding table does not have are refused at load, naming both files", () => {
    // The added tokens go up to the image token, 303: a model of 304 rows has them all, one of 303 does not.
    TextProcessor.load(qwenFolder(), { id: QWEN_SPECIAL.image }, { vocabSize: QWEN_SPECIAL.image + 1 }).dispose();
    throwsFicoco(
      () => TextProcessor.load(qwenFolder(), { id: QWEN_SPECIAL.image }, { vocabSize: QWEN_SPECIAL.image }),
      'config',
      /tokenizer\.json gives token ids from 0 to 303, and config\.json's vocab_size is 303 \(ids 0 to 302\)/,
    );
  });

  test('a token longer than any vocabulary has is refused at load, not decoded into more text than fits', () => {
    const tokenizer = qwenTokenizer();
    // 4096 tokens of it would be 1.6 G characters, past the longest string V8 holds.
    const long = { ...addedToken(304, 'x'.repeat(400_000), false) };
    throwsFicoco(
      () =>
        TextProcessor.load(
          qwenFolder({ 'tokenizer.json': { ...tokenizer, added_tokens: [...tokenizer.added_tokens, long] } }),
          { id: QWEN_SPECIAL.image },
        ),
      'config',
      new RegExp(
        `tokenizer\\.json has a token of 400000 characters \\("xxx.*"…\\), where tokens have at most ${MAX_TOKEN_CHARS}; this model folder cannot be used as is`,
      ),
    );
    const vocab = { ...tokenizer.model.vocab, ['y'.repeat(MAX_TOKEN_CHARS + 1)]: 304 };
    throwsFicoco(
      () =>
        TextProcessor.load(qwenFolder({ 'tokenizer.json': { ...tokenizer, model: { ...tokenizer.model, vocab } } }), {
          id: QWEN_SPECIAL.image,
        }),
      'config',
      new RegExp(`has a token of ${MAX_TOKEN_CHARS + 1} characters`),
    );
  });

  test('a normalizer or decoder that writes a long text at every position is refused at load', () => {
    const tokenizer = qwenTokenizer();
    // An empty pattern matches before every character: a 2-character window decoded to 90 M characters, the
    // answer's decoding ran out of memory, and a prompt's normalizing past the longest string.
    const everywhere = { type: 'Replace', pattern: { String: '' }, content: 'y'.repeat(30_000_000) };
    const folder = (changes: Record<string, unknown>) => qwenFolder({ 'tokenizer.json': { ...tokenizer, ...changes } });
    throwsFicoco(
      () => TextProcessor.load(folder({ decoder: everywhere }), { id: QWEN_SPECIAL.image }),
      'config',
      /tokenizer\.json has a decoder that may make a text millions of times longer \(Replace, Prepend or Metaspace texts; at most 16 times\); this model folder cannot be used as is/,
    );
    throwsFicoco(
      () =>
        TextProcessor.load(folder({ normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, everywhere] } }), {
          id: QWEN_SPECIAL.image,
        }),
      'config',
      /has a normalizer and pre-tokenizer that may make a text millions of times longer/,
    );
    // Small growths multiply: eight Prepends of one character may double a text eight times over.
    const prepends = Array.from({ length: 8 }, () => ({ type: 'Prepend', prepend: '▁' }));
    throwsFicoco(
      () =>
        TextProcessor.load(folder({ normalizer: { type: 'Sequence', normalizers: prepends } }), {
          id: QWEN_SPECIAL.image,
        }),
      'config',
      /has a normalizer and pre-tokenizer that may make a text 1024 times longer/,
    );
    // A released tokenizer's growth: Llama's prepended and replaced spaces, then byte-level pieces.
    const llamaLike = {
      normalizer: {
        type: 'Sequence',
        normalizers: [
          { type: 'Prepend', prepend: '▁' },
          { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
        ],
      },
      decoder: {
        type: 'Sequence',
        decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteLevel' }],
      },
    };
    TextProcessor.load(folder(llamaLike), { id: QWEN_SPECIAL.image }).dispose();
  });

  test('a million eos ids in generation_config.json are read, not a stack overflow', () => {
    const many = Array.from({ length: 1_000_000 }, (_, i) => i);
    const text = TextProcessor.load(qwenFolder({ 'generation_config.json': { eos_token_id: many } }), {
      id: QWEN_SPECIAL.image,
    });
    assert.equal(text.stopTokenIds.length, 1_000_000);
    text.dispose();
  });

  test('decode keeps spaces and newlines exactly and drops special tokens', () => {
    const ids = text.encode('<|im_start|>user\n<image>\nhello world<|im_end|>');
    assert.equal(text.decode(ids), 'user\n\nhello world');
    assert.equal(text.tokenText(QWEN_VOCAB.indexOf('Ġworld')), 'Ġworld');
  });

  test('streaming multi-byte characters split across byte tokens', () => {
    const ids = text.encode('hello 世界🙂');
    assert.deepEqual(ids, [QWEN_VOCAB.indexOf('hello'), ...bytes(' 世界🙂')]);
    const chunks = stream(text, [...ids, QWEN_SPECIAL.imEnd]);
    assert.deepEqual(chunks, ['hello', ' ', '', '', '世', '', '', '界', '', '', '', '🙂', '', '']);
    assert.equal(chunks.join(''), 'hello 世界🙂');
  });
});

// ---------------------------------------------------------------- where the template lives, and failures

describe('chat template location and errors', () => {
  const messages: ChatMessage[] = [{ role: 'user', content: 'hi' }];

  test('chat_template.jinja beats chat_template.json and tokenizer_config.json', async () => {
    const dir = qwenFolder({ 'chat_template.jinja': 'JINJA {{ messages[0].content }}' });
    assert.equal(await loadForRendering(dir, { text: '<image>' }).renderPrompt(messages), 'JINJA hi');
  });

  test('tokenizer_config.json string template when no other file exists', async () => {
    const dir = qwenFolder();
    fs.rmSync(path.join(dir, 'chat_template.json'));
    assert.equal(
      await loadForRendering(dir, { text: '<image>' }).renderPrompt(messages),
      '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  test('tokenizer_config.json list of named templates: "default" is used', async () => {
    const dir = wordLevelFolder();
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    config.chat_template = [
      { name: 'tool_use', template: 'TOOLS' },
      { name: 'default', template: 'DEFAULT {{ bos_token }}{{ eos_token }}{{ pad_token }}{{ unk_token }}' },
    ];
    config.pad_token = '<unk>';
    config.unk_token = { content: '<unk>' };
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    assert.equal(await loadForRendering(dir, { id: 9 }).renderPrompt(messages), 'DEFAULT <s></s><unk><unk>');

    config.chat_template = [{ name: 'tool_use', template: 'TOOLS' }];
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    throwsFicoco(() => TextProcessor.load(dir, { id: 9 }), 'config', /list without a \{"name": "default"/);
  });

  test('no chat template anywhere', () => {
    const dir = qwenFolder();
    fs.rmSync(path.join(dir, 'chat_template.json'));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|im_end|>' }));
    throwsFicoco(
      () => TextProcessor.load(dir, { text: '<image>' }),
      'model-folder',
      /has no chat template: expected chat_template in tokenizer_config\.json, chat_template\.json or chat_template\.jinja/,
    );
  });

  test('template syntax error names the file', async () => {
    const dir = qwenFolder({ 'chat_template.jinja': '{% for m in messages %}' });
    const text = TextProcessor.load(dir, { text: '<image>' });
    try {
      await assert.rejects(text.checkTemplate(), {
        name: 'FicocoError',
        kind: 'config',
        message: /chat template in .*chat_template\.jinja does not parse/,
      });
      await assert.rejects(text.renderPrompt([{ role: 'user', content: 'hi' }]), { kind: 'config' });
    } finally {
      text.dispose();
    }
  });

  test('raise_exception in the template becomes an input error', async () => {
    const dir = qwenFolder({
      'chat_template.jinja':
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with a user " +
        "message') }}{% endif %}ok",
    });
    const text = loadForRendering(dir, { text: '<image>' });
    assert.equal(await text.renderPrompt(messages), 'ok');
    await assert.rejects(text.renderPrompt([{ role: 'assistant', content: 'x' }]), {
      name: 'FicocoError',
      kind: 'input',
      message: /cannot render this conversation: Conversation must start with a user message/,
    });
  });

  test('missing tokenizer.json, or a broken one', () => {
    const dir = qwenFolder();
    fs.rmSync(path.join(dir, 'tokenizer.json'));
    throwsFicoco(
      () => TextProcessor.load(dir, { text: '<image>' }),
      'model-folder',
      /lacks tokenizer\.json \(the Hugging Face fast tokenizer file\); this model folder cannot be used/,
    );
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
    throwsFicoco(() => TextProcessor.load(dir, { text: '<image>' }), 'config', /tokenizer\.json is not valid JSON/);
  });

  test('a settings file is read only as a bounded regular file, and a parse error does not quote it', () => {
    const dir = qwenFolder();
    const config = path.join(dir, 'tokenizer_config.json');
    const load = () => TextProcessor.load(dir, { text: '<image>' });
    // A link to a device would be read without end.
    fs.rmSync(config);
    fs.symlinkSync('/dev/zero', config);
    throwsFicoco(load, 'config', /tokenizer_config\.json is not a regular file/);
    fs.rmSync(config);
    fs.writeFileSync(config, Buffer.alloc(MAX_SETTINGS_FILE_BYTES + 1, 0x20));
    throwsFicoco(
      load,
      'config',
      new RegExp(`is more than ${MAX_SETTINGS_FILE_BYTES} bytes, more than such a file holds`),
    );
    // A link to another file is followed (a Hub cache's snapshot links to its blobs); what it holds is not quoted.
    fs.rmSync(config);
    const secret = path.join(dir, '..', `secret-${path.basename(dir)}`);
    fs.writeFileSync(secret, 'root:x:0:0:root:/root:/bin/bash\n');
    fs.symlinkSync(secret, config);
    assert.throws(load, (error: Error) => {
      assert.match(error.message, /tokenizer_config\.json is not valid JSON( \(at character \d+\))?;/);
      assert.doesNotMatch(error.message, /root/);
      return true;
    });
    fs.rmSync(secret);
  });
});
