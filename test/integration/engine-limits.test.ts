/**
 * The prompt fits the model and the run fits the machine: a question too long for max_position_embeddings is
 * refused, a long conversation is trimmed from its oldest turns (and says so), an answer never runs past the
 * context, a run whose KV cache and activations exceed the memory available is refused before it starts, and weights
 * larger than the machine's memory are refused at load.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import { LlavaEngine, type ReductionRequest } from '../../src/engine/engine';
import { PREFILL_CHUNK_TOKENS, promptChunkTokens } from '../../src/engine/promptChunks';
import { flopsArchOf } from '../../src/engine/models/flopsArch';
import type { ChatMessage } from '../../src/engine/text';
import { parseModelConfig } from '../../src/engine/models/registry';
import { cpuWeightBytes } from '../../src/engine/weights/footprint';
import { thisMachine } from '../../src/engine/runtime/provider';
import { WeightQuantizer } from '../../src/engine/weights/quantizedCache';
import { WeightIndex } from '../../src/engine/weights/safetensors';
import { archPreset, peakRunBytes } from '../../src/flops';
import { temporaryFolders } from '../helpers/tempFolders';

const ROOT = path.join(__dirname, '..', '..');
const BUILTIN = path.join(ROOT, 'models', 'tiny-llava-screens');
const IMAGE = {
  name: '1000000025.png',
  bytes: fs.readFileSync(path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png')),
};
const QUESTION = 'which box does the arrow point to ?';
/** The built-in model reads 512 positions (config.json) and turns an image into 144 visual tokens. */
const CONTEXT = 512;

/** A text-only message of the history, as the chat keeps it. */
const message = (role: 'user' | 'assistant', text: string): ChatMessage => ({
  role,
  content: [{ type: 'text', text }],
});

const inputError = (pattern: RegExp) => (error: unknown) =>
  error instanceof FicocoError && error.kind === 'input' && pattern.test(error.message);

describe('prompts and runs that do not fit', () => {
  let engine: LlavaEngine;
  before(async () => {
    engine = await LlavaEngine.load(BUILTIN, { provider: 'cpu', threads: 1 });
  });
  after(() => engine.dispose());

  test("a question too long for the model's context is refused, naming both sizes", async () => {
    const question = `${'box '.repeat(2900)}?`;
    await assert.rejects(
      engine.ask({ question, images: [IMAGE], maxNewTokens: 4 }),
      inputError(/make a \d{4}-token prompt, and this model reads at most 512 tokens \(max_position_embeddings/),
    );
  });

  test('a 2,000-turn conversation keeps its latest turns, says how many it left out, and answers within the context', async () => {
    const history: ChatMessage[] = Array.from({ length: 2000 }, (_, turn) => [
      message('user', `question number ${turn} ?`),
      message('assistant', `answer ${turn % 9}`),
    ]).flat();
    const answer = await engine.ask({ question: QUESTION, images: [IMAGE], history, maxNewTokens: 8 });
    const trimmed = answer.stats.historyTrimmed;
    assert.ok(trimmed, 'the answer says the history was trimmed');
    assert.equal(trimmed.contextTokens, CONTEXT);
    assert.equal(trimmed.droppedMessages % 2, 0, 'whole turns are left out, from a user message on');
    assert.ok(trimmed.droppedMessages < history.length, 'some turns are kept');
    assert.ok(
      answer.stats.promptTokens + 8 <= CONTEXT,
      `${answer.stats.promptTokens} prompt tokens leave the answer its room`,
    );
    // One turn more would not have fitted: the history is trimmed no more than it must be.
    const keptTurns = (history.length - trimmed.droppedMessages) / 2;
    const tighter = await engine.ask({
      question: QUESTION,
      images: [IMAGE],
      history: history.slice(-2 * (keptTurns + 1)),
      maxNewTokens: 8,
    });
    assert.equal(tighter.stats.historyTrimmed?.droppedMessages, 2);
  });

  test('more text than any prompt may hold: a question is refused as too long, old turns are left out', async () => {
    const long = 'word '.repeat(1_000_000);
    await assert.rejects(
      engine.ask({ question: long, images: [IMAGE], maxNewTokens: 4 }),
      inputError(/holds 5000000 characters of text, more than the 2097152 a prompt may have; ask a shorter question/),
    );
    const history = [message('user', 'what is this ?'), message('assistant', long)];
    const answer = await engine.ask({ question: QUESTION, images: [IMAGE], history, maxNewTokens: 4 });
    assert.equal(answer.stats.historyTrimmed?.droppedMessages, 2);
  });

  test('a conversation that fits is not trimmed, though it opens with the assistant (a greeting)', async () => {
    const history = [message('user', 'what is this ?'), message('assistant', 'a screenshot')];
    const answer = await engine.ask({ question: QUESTION, images: [IMAGE], history, maxNewTokens: 4 });
    assert.equal(answer.stats.historyTrimmed, undefined);
    const greeted = [message('assistant', 'hello , ask about a screenshot'), ...history];
    const after = await engine.ask({ question: QUESTION, images: [IMAGE], history: greeted, maxNewTokens: 4 });
    assert.equal(after.stats.historyTrimmed, undefined);
    assert.ok(after.stats.promptTokens > answer.stats.promptTokens, 'the greeting is in the prompt');
  });

  test('history whose content is a string, as ChatMessage allows, is the same conversation as text parts', async () => {
    const parts = [message('user', 'what is this ?'), message('assistant', 'a screenshot')];
    const strings: ChatMessage[] = [
      { role: 'system', content: 'answer in a word' },
      { role: 'user', content: 'what is this ?' },
      { role: 'assistant', content: 'a screenshot' },
    ];
    const asParts = await engine.ask({
      question: QUESTION,
      images: [IMAGE],
      history: [{ role: 'system', content: [{ type: 'text', text: 'answer in a word' }] }, ...parts],
      maxNewTokens: 4,
    });
    const asStrings = await engine.ask({ question: QUESTION, images: [IMAGE], history: strings, maxNewTokens: 4 });
    assert.equal(asStrings.stats.promptTokens, asParts.stats.promptTokens);
    assert.deepEqual(asStrings.tokenIds, asParts.tokenIds);
  });

  test('an image in the history is refused before any image is read: earlier turns are text only', async () => {
    const history: ChatMessage[] = [
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'what is this ?' }] },
      message('assistant', 'a screenshot'),
    ];
    const progress: string[] = [];
    await assert.rejects(
      engine.ask({
        question: QUESTION,
        images: [IMAGE],
        history,
        maxNewTokens: 4,
        onProgress: (p) => progress.push(p.stage),
      }),
      inputError(/history message 1 \(user\) has an image; earlier turns are text only/),
    );
    assert.deepEqual(progress, [], 'no tower pass ran');
  });

  test('text that spells the image token marks no image: an answer about HTML does not break the chat', async () => {
    const history = [message('user', 'how do i put a picture in html ?'), message('assistant', 'use the <image> tag')];
    const answer = await engine.ask({ question: 'and <image> in xml ?', images: [IMAGE], history, maxNewTokens: 2 });
    assert.ok(answer.stats.promptTokens > 144, 'one image, its 144 visual tokens in the prompt');
    const followUp = await engine.ask({ question: 'what is <image> ?', images: [], history, maxNewTokens: 2 });
    assert.ok(followUp.stats.promptTokens < 144, 'no image');
    const marked = engine.text.withoutImageMarks(message('user', '<image><image>'));
    const ids = engine.text.encode(await engine.text.renderPrompt([marked]));
    assert.ok(!ids.includes(engine.config.imageTokenId));
  });

  test('an answer stops where the context ends, whatever the token limit asked for', async () => {
    const pixels = await engine.pixelValues(IMAGE.bytes, IMAGE.name);
    const ids = engine.text.encode(
      await engine.text.renderPrompt([
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] },
      ]),
    );
    const result = await engine.generate(ids, [pixels], { maxNewTokens: 4096, stopTokenIds: [] });
    assert.equal(result.stopReason, 'max-tokens');
    assert.equal(result.promptTokens + result.tokenIds.length, CONTEXT);
  });

  test('a run that needs more memory than is available is refused before it starts, saying how much', async () => {
    const starved = await LlavaEngine.load(BUILTIN, { provider: 'cpu', threads: 1, availableMemory: () => 1_000_000 });
    try {
      await assert.rejects(
        starved.ask({ question: QUESTION, images: [IMAGE], maxNewTokens: 8 }),
        inputError(
          /needs about 0\.\d\d GiB of memory for attention and the KV cache \(157 prompt tokens, up to 8 in the answer\), and 0\.00 GiB is available/,
        ),
      );
    } finally {
      await starved.dispose();
    }
  });
});

test("a reduction comparing every pair of an image's tokens is refused when that matrix would not fit", async () => {
  // A run reads the memory available twice: for the decoder's run, then for the image's pairwise matrix.
  let readings = 0;
  let forMatrix = 0;
  const engine = await LlavaEngine.load(BUILTIN, {
    provider: 'cpu',
    threads: 1,
    availableMemory: () => (readings++ % 2 === 0 ? Infinity : forMatrix),
  });
  try {
    // The matrix twice (ONNX Runtime's and the copy handed over), and three copies of the rows.
    forMatrix = 2 * 4 * 144 ** 2 + 3 * 4 * 144 * engine.config.text.hiddenSize - 1;
    const progress: unknown[] = [];
    const ask = () =>
      engine.ask({
        question: QUESTION,
        images: [IMAGE],
        reduction: { method: 'divprune', budget: { tokens: 36 } },
        maxNewTokens: 1,
        onProgress: (report) => progress.push(report),
      });
    await assert.rejects(
      ask(),
      inputError(/compares every pair of an image's visual tokens \(144\), which needs about 0\.00 GiB of memory/),
    );
    assert.deepEqual(progress, [], 'refused before the image was read');
    forMatrix += 1;
    assert.equal((await ask()).stats.steps[0].tokensAfter, 36);
    assert.ok(progress.length > 0, 'a run that goes ahead reports reading the image');
  } finally {
    await engine.dispose();
  }
});

test('a decoder cut into segments needs an arena each, then only what those arenas grow by', async () => {
  let available = Infinity;
  const engine = await LlavaEngine.load(BUILTIN, { provider: 'cpu', threads: 1, availableMemory: () => available });
  try {
    const ask = (reduction?: ReductionRequest) =>
      engine.ask({ question: QUESTION, images: [IMAGE], maxNewTokens: 8, reduction });
    const ficocoL: ReductionRequest = { method: 'ficoco-l', budget: { ratio: 0.25 } };
    const { promptTokens } = (await ask()).stats;
    const segments = new Set(engine.reductionHooks(ficocoL, [{ width: 1, height: 1 }]).map((h) => h.site)).size + 1;
    const arch = flopsArchOf(engine.config, path.basename(BUILTIN));
    const { heads } = engine.config.text;
    const needs = (count: number) =>
      peakRunBytes(
        arch,
        {
          promptTokens,
          answerTokens: 8,
          queryChunk: promptChunkTokens(PREFILL_CHUNK_TOKENS, count, heads, promptTokens),
          newDecoderArenas: count,
        },
        4,
      );
    assert.ok(needs(segments) > needs(1), `${segments} segments need more than one`);
    // Enough for a decoder in one piece, not for FiCoCo-L's pieces, none of which has run.
    available = needs(1);
    await assert.rejects(ask(ficocoL), inputError(/needs about .* GiB of memory for attention and the KV cache/));
    await ask();
    available = Infinity;
    await ask(ficocoL);
    // Its pieces now hold their working sets, so the same memory is enough for it.
    available = needs(1);
    await ask(ficocoL);
  } finally {
    await engine.dispose();
  }
});

test('the memory a run plans for: LLaVA-1.5-7B in float32 with a 2,957-token prompt', () => {
  const arch = archPreset('llava-1.5-7b');
  const bytes = peakRunBytes(arch, { promptTokens: 2957, answerTokens: 256 }, 4);
  // KV: 2 · 32 layers · 32 heads · 128 · 4 B per token; attention: 2 · 32 heads · 2957² · 4 B.
  const kv = 2 * 32 * 32 * 128 * 4 * (2957 + 256);
  const attention = 2 * 32 * 2957 ** 2 * 4;
  assert.ok(bytes > kv + attention && bytes < 1.2 * (kv + attention), `${(bytes / 2 ** 30).toFixed(2)} GiB`);
});

describe('weights that do not fit the machine', () => {
  const temporaryFolder = temporaryFolders();
  const FLOAT16_FIXTURE = path.join(ROOT, 'test', 'fixtures', 'tiny-llava-llama-f16');
  const index = WeightIndex.open(FLOAT16_FIXTURE);
  const model = parseModelConfig(
    JSON.parse(fs.readFileSync(path.join(FLOAT16_FIXTURE, 'config.json'), 'utf8')),
    'config.json',
  );
  const withMode = (mode: 'int8' | 'int4', oneForm = false) => {
    const quantizer = new WeightQuantizer(index, mode, { onCpu: true, oneForm });
    model.build(index, quantizer);
    return cpuWeightBytes(index, quantizer);
  };
  const bytes = {
    none: cpuWeightBytes(index),
    int8: withMode('int8'),
    int8Once: withMode('int8', true),
    int4: withMode('int4'),
  };
  const memoryError = (pattern: RegExp) => (error: unknown) =>
    error instanceof FicocoError && error.kind === 'memory' && pattern.test(error.message);

  test('the CPU holds float16 weights as float32, and quantized layers in their forms instead', () => {
    const elements = index.names().reduce((sum, name) => sum + index.get(name).shape.reduce((n, d) => n * d, 1), 0);
    assert.equal(bytes.none, 4 * elements);
    // int8 keeps a decoder layer twice on the CPU (channels for prompts, blocks for steps), or once where memory is
    // short; int4 once in 4 bits (on this 48-wide fixture its blocks of 128 are mostly padding: int8's size held once).
    assert.ok(
      bytes.int4 <= bytes.int8Once && bytes.int8Once < bytes.int8 && bytes.int8 < bytes.none,
      JSON.stringify(bytes),
    );
  });

  test('a quantized head tied to the embedding table leaves the table in float32 for the embedding', () => {
    const tied = path.join(ROOT, 'test', 'fixtures', 'tiny-llava-qwen2-bf16');
    const tiedIndex = WeightIndex.open(tied);
    const quantizer = new WeightQuantizer(tiedIndex, 'int4', { onCpu: true });
    parseModelConfig(JSON.parse(fs.readFileSync(path.join(tied, 'config.json'), 'utf8')), 'config.json').build(
      tiedIndex,
      quantizer,
    );
    const { bytes: quantizedBytes, replaces } = quantizer.footprint();
    const replaced = replaces.map((weight) => weight.name);
    const table = tiedIndex.names().find((name) => name.endsWith('embed_tokens.weight'))!;
    assert.ok(
      replaced.some((name) => name.endsWith('down_proj.weight')),
      'the decoder layers are replaced',
    );
    assert.ok(!replaced.includes(table), 'the table the head shares is not');
    const tableBytes = 4 * tiedIndex.get(table).shape.reduce((n, d) => n * d, 1);
    assert.ok(cpuWeightBytes(tiedIndex, quantizer) >= tableBytes + quantizedBytes);
  });

  test('are refused at load, naming the quantizations that fit; a quantization that fits loads', async () => {
    const load = (totalMemory: number, quantization: 'none' | 'int4' = 'none') =>
      LlavaEngine.load(folder, { provider: 'cpu', threads: 1, quantization, totalMemory: () => totalMemory });
    const folder = temporaryFolder('ficoco-memory-');
    fs.cpSync(FLOAT16_FIXTURE, folder, { recursive: true });
    await assert.rejects(
      load(Math.floor((bytes.int8Once + bytes.int8) / 2)),
      memoryError(
        /^This model takes about 0\.00 GiB of memory on the CPU \(its float weights as float32\), and this machine has 0\.00 GiB in all\. Quantize them — int8 takes from about 0\.00 GiB, int4 takes about 0\.00 GiB \(ficoco\.quantization in VS Code, --quantize on the command line\) — or run on a GPU provider\.$/,
      ),
    );
    await assert.rejects(
      load(bytes.none - 1),
      memoryError(/Quantize them — int8 takes from about .*, int4 takes about/),
    );
    await assert.rejects(load(bytes.int4 - 1), memoryError(/Choose a smaller model, or run on a GPU provider\.$/));
    await assert.rejects(load(bytes.int4 - 1, 'int4'), memoryError(/\(int4\), .* Choose a smaller model/));
    const engine = await load(bytes.int4, 'int4');
    await engine.dispose();
  });

  test(
    'a GPU provider that cannot run: the refusal starts with why, as the CPU would run the model',
    { skip: thisMachine().cudaLibraries && 'needs a machine without the CUDA provider libraries, where CUDA fails' },
    async () => {
      const folder = temporaryFolder('ficoco-memory-');
      fs.cpSync(FLOAT16_FIXTURE, folder, { recursive: true });
      await assert.rejects(
        LlavaEngine.load(folder, { provider: 'cuda', threads: 1, totalMemory: () => bytes.int4 - 1 }),
        memoryError(/^cuda could not be used \(.*\)\. This model takes about .* on the CPU/s),
      );
    },
  );
});

describe('weights that hold no numbers', () => {
  const temporaryFolder = temporaryFolders();

  test('a float32 decoder weight of NaN fails the answer naming the weights, not token 0 again and again', async () => {
    const folder = temporaryFolder('ficoco-nan-');
    const fixture = path.join(ROOT, 'test', 'fixtures', 'tiny-llava-llama');
    for (const file of fs.readdirSync(fixture)) fs.copyFileSync(path.join(fixture, file), path.join(folder, file));
    // The decoder's last norm as NaN: a float32 load maps the file without reading it, so only the run can tell.
    const file = path.join(folder, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const headerBytes = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerBytes).toString('utf8')) as Record<
      string,
      { data_offsets: [number, number] }
    >;
    const [start, end] = header['language_model.model.norm.weight'].data_offsets;
    for (let at = 8 + headerBytes + start; at < 8 + headerBytes + end; at += 4) bytes.writeFloatLE(NaN, at);
    fs.writeFileSync(file, bytes);
    const engine = await LlavaEngine.load(folder, { provider: 'cpu', threads: 1 });
    try {
      await assert.rejects(
        engine.ask({ question: 'what is in the picture ?', images: [IMAGE], maxNewTokens: 4 }),
        (error) =>
          error instanceof FicocoError &&
          error.kind === 'weights' &&
          /no number for any token after the prompt \(every logit NaN\): its weights hold NaN/.test(error.message),
      );
    } finally {
      await engine.dispose();
    }
  });
});
