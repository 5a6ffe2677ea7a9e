import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, ResponseError } from 'vscode-jsonrpc';
import {
  AnswerStats,
  AskParams,
  MAX_IMAGE_BYTES,
  MAX_NEW_TOKENS_LIMIT,
  base64Length,
  decodedLength,
  errorKindOf,
  loadKey,
  parseAnswerStats,
  parseAskParams,
  parseLoadParams,
  parseAskProgressParams,
  parseLoadProgressParams,
  parseTextParams,
} from '../../src/protocol/engine';
import { describeValue } from '../../src/protocol/describe';
import type { AnswerStats as EngineAnswerStats } from '../../src/engine/api';

const ASK: AskParams = {
  requestId: 'r1',
  question: 'what is in the picture?',
  images: [{ name: 'shot.png', dataBase64: Buffer.from('png bytes').toString('base64') }],
  maxNewTokens: 64,
  temperature: 0,
  topP: 1,
  seed: 0,
};

/** The message a validator refuses `value` with; it must be an InvalidParams ResponseError of kind 'input'. */
function refusal(parse: (value: unknown) => unknown, value: unknown): string {
  try {
    parse(value);
  } catch (error) {
    assert.ok(error instanceof ResponseError);
    assert.equal(error.code, ErrorCodes.InvalidParams);
    assert.equal(errorKindOf(error), 'input');
    return error.message;
  }
  assert.fail(`accepted ${JSON.stringify(value)}`);
}

describe('engine/load params', () => {
  test('accepts a folder and a provider, threads optional', () => {
    assert.deepEqual(parseLoadParams({ modelDir: '/models/llava', provider: 'auto' }), {
      modelDir: '/models/llava',
      provider: 'auto',
    });
    assert.deepEqual(parseLoadParams({ modelDir: '/m', provider: 'cuda', threads: 4 }), {
      modelDir: '/m',
      provider: 'cuda',
      threads: 4,
    });
    assert.deepEqual(parseLoadParams({ modelDir: '/m', provider: 'cpu', cores: 2 }), {
      modelDir: '/m',
      provider: 'cpu',
      cores: 2,
    });
    const quantized = {
      modelDir: '/m',
      provider: 'cpu',
      quantization: 'int4',
      quantizedCacheDir: '/storage/quantized',
    } as const;
    assert.deepEqual(parseLoadParams(quantized), quantized);
  });

  test('drops fields it does not know', () => {
    assert.deepEqual(parseLoadParams({ modelDir: '/m', provider: 'cpu', extra: true }), {
      modelDir: '/m',
      provider: 'cpu',
    });
  });

  test('names what is wrong', () => {
    assert.match(refusal(parseLoadParams, null), /engine\/load params is null; expected an object/);
    assert.match(refusal(parseLoadParams, [1]), /is an array/);
    assert.match(refusal(parseLoadParams, { provider: 'cpu' }), /modelDir is missing/);
    assert.match(refusal(parseLoadParams, { modelDir: '  ', provider: 'cpu' }), /modelDir is empty/);
    assert.match(
      refusal(parseLoadParams, { modelDir: '/m', provider: 'tpu' }),
      /provider is "tpu"; expected one of auto, cpu, cuda, dml, coreml, webgpu/,
    );
    assert.match(
      refusal(parseLoadParams, { modelDir: '/m', provider: 'cpu', threads: 0 }),
      /threads is 0; expected a whole number from 1/,
    );
    assert.match(refusal(parseLoadParams, { modelDir: '/m', provider: 'cpu', threads: 1.5 }), /threads is 1\.5/);
    assert.match(
      refusal(parseLoadParams, { modelDir: '/m', provider: 'cpu', cores: 0 }),
      /cores is 0; expected a whole number from 1/,
    );
  });

  test('a load with another share of the cores is another load', () => {
    const load = { modelDir: '/m', provider: 'cpu' } as const;
    assert.notEqual(loadKey({ ...load, cores: 1 }), loadKey({ ...load, cores: 2 }));
    assert.notEqual(loadKey({ ...load, cores: 1 }), loadKey(load));
  });
});

describe('engine/ask params', () => {
  test('accepts a well-formed ask unchanged', () => {
    assert.deepEqual(parseAskParams(ASK), ASK);
    assert.deepEqual(parseAskParams({ ...ASK, images: [] }), { ...ASK, images: [] });
  });

  test('refuses numbers out of range', () => {
    assert.match(refusal(parseAskParams, { ...ASK, maxNewTokens: 0 }), /maxNewTokens is 0/);
    assert.match(refusal(parseAskParams, { ...ASK, maxNewTokens: MAX_NEW_TOKENS_LIMIT + 1 }), /maxNewTokens/);
    assert.match(refusal(parseAskParams, { ...ASK, temperature: -1 }), /temperature is -1/);
    assert.match(refusal(parseAskParams, { ...ASK, temperature: Number.NaN }), /temperature is NaN/);
    assert.match(refusal(parseAskParams, { ...ASK, topP: 0 }), /topP is 0; expected a number from just above 0 to 1/);
    assert.match(refusal(parseAskParams, { ...ASK, topP: 1.5 }), /topP is 1\.5/);
    assert.match(refusal(parseAskParams, { ...ASK, seed: -1 }), /seed is -1/);
    assert.match(refusal(parseAskParams, { ...ASK, seed: '7' }), /seed is "7"/);
    const stages = { topK: 40, minP: 0.05, repetitionPenalty: 1.1 };
    assert.deepEqual(parseAskParams({ ...ASK, ...stages }), { ...ASK, ...stages });
    assert.match(refusal(parseAskParams, { ...ASK, topK: -1 }), /topK is -1; expected a whole number from 0/);
    assert.match(refusal(parseAskParams, { ...ASK, minP: 2 }), /minP is 2; expected a number from 0 to 1/);
    assert.match(
      refusal(parseAskParams, { ...ASK, repetitionPenalty: 0 }),
      /repetitionPenalty is 0; expected a finite number from just above 0\./,
    );
  });

  test('refuses missing text fields', () => {
    assert.match(refusal(parseAskParams, { ...ASK, requestId: '' }), /requestId is empty/);
    assert.match(refusal(parseAskParams, { ...ASK, question: undefined }), /question is missing; expected a string/);
  });

  test('checks every image: shape, base64 and size', () => {
    assert.match(refusal(parseAskParams, { ...ASK, images: 'shot.png' }), /images is "shot\.png"; expected an array/);
    assert.match(
      refusal(parseAskParams, { ...ASK, images: [ASK.images[0], { name: 'b.png' }] }),
      /images\[1\]\.dataBase64 is missing/,
    );
    assert.match(
      refusal(parseAskParams, { ...ASK, images: [{ name: 'b.png', dataBase64: 'not base64!' }] }),
      /images\[0\]\.dataBase64 \(b\.png\) is not base64/,
    );
    assert.match(refusal(parseAskParams, { ...ASK, images: [{ name: 'b.png', dataBase64: '' }] }), /is not base64/);
    const huge = 'A'.repeat(base64Length(MAX_IMAGE_BYTES) + 4);
    assert.match(
      refusal(parseAskParams, { ...ASK, images: [{ name: 'huge.png', dataBase64: huge }] }),
      /huge\.png\) is larger than 32 MiB/,
    );
  });

  test('accepts an image of exactly the size limit', () => {
    const largest = 'A'.repeat(base64Length(MAX_IMAGE_BYTES));
    assert.equal(
      parseAskParams({ ...ASK, images: [{ name: 'big.png', dataBase64: largest }] }).images[0].dataBase64.length,
      largest.length,
    );
  });
});

describe('engine/text params and error kinds', () => {
  test('a text piece needs its requestId; the text may be empty', () => {
    assert.deepEqual(parseTextParams({ requestId: 'r1', text: '' }), { requestId: 'r1', text: '' });
    assert.match(refusal(parseTextParams, { text: 'hi' }), /requestId is missing/);
  });

  test('a load progress names a quantization and counts whole layers up to its total', () => {
    const progress = { quantization: 'int4', done: 3, total: 155 };
    assert.deepEqual(parseLoadProgressParams(progress), progress);
    assert.match(refusal(parseLoadProgressParams, { ...progress, done: 156 }), /done/);
    assert.match(refusal(parseLoadProgressParams, { ...progress, done: 1.5 }), /done/);
    assert.match(refusal(parseLoadProgressParams, { ...progress, total: 0 }), /total/);
    assert.match(refusal(parseLoadProgressParams, { ...progress, quantization: 'none' }), /int8 or int4/);
  });

  test("an ask's progress names its stage and counts up to its total", () => {
    const progress = { requestId: 'r1', stage: 'prompt', done: 1183, total: 1183 };
    assert.deepEqual(parseAskProgressParams(progress), progress);
    assert.match(refusal(parseAskProgressParams, { ...progress, stage: 'decode' }), /image or prompt/);
    assert.match(refusal(parseAskProgressParams, { ...progress, done: 1184 }), /done/);
    assert.match(refusal(parseAskProgressParams, { ...progress, requestId: '' }), /requestId/);
    const foretelling = { ...progress, done: 0, nextRunMs: 2_400.5 };
    assert.deepEqual(parseAskProgressParams(foretelling), foretelling);
    assert.match(refusal(parseAskProgressParams, { ...progress, nextRunMs: -1 }), /nextRunMs/);
    assert.match(refusal(parseAskProgressParams, { ...progress, nextRunMs: '9' }), /nextRunMs/);
  });

  test('errorKindOf reads only known kinds from ResponseErrors', () => {
    assert.equal(errorKindOf(new ResponseError(1, 'x', { kind: 'image' })), 'image');
    assert.equal(errorKindOf(new ResponseError(1, 'x', { kind: 'nonsense' })), undefined);
    assert.equal(errorKindOf(new ResponseError(1, 'x')), undefined);
    assert.equal(errorKindOf(new Error('x')), undefined);
  });
});

describe('answer stats from another process (a remote ficoco serve)', () => {
  const flops = { vision: 4, projector: 1, llm: 10, total: 15 };
  const STATS: AnswerStats = {
    reduction: { method: 'ficoco-v', budget: '2', params: { window: 3 }, rule: 'setting', why: 'ficoco.reduction' },
    promptTokens: 12,
    generatedTokens: 3,
    visualTokens: [{ original: 4, atDecoder: 2 }],
    imageSizes: [{ width: 20, height: 10 }],
    steps: [{ site: 'vision:1', image: 0, tokensBefore: 4, tokensAfter: 2, ms: 0.5, cpuMs: 0.6 }],
    patchFates: [
      {
        rows: 2,
        cols: 2,
        patches: 'kmkd',
        tileBorders: { rows: [1], cols: [] },
        thumbnail: { rows: 2, cols: 2, patches: 'dkdd' },
      },
    ],
    preprocessMs: 1,
    visionMs: 2,
    prefillMs: 3,
    ttftMs: 4,
    decodeTokensPerSecond: 50,
    flops: { run: flops, unreduced: { ...flops, total: 30 } },
    provider: 'cpu',
    historyTrimmed: { droppedMessages: 1, contextTokens: 100 },
  };

  test('what the engine sends comes back as it was', () => {
    assert.deepEqual(parseAnswerStats(JSON.parse(JSON.stringify(STATS))), STATS);
  });

  test("a schedule with a share for each of a decoder's layers comes back whole", () => {
    // The official FiCoCo-L schedule on LLaVA-1.5: 14 at each of layers 5…31, 80 characters.
    const schedule = new Array<number>(27).fill(14).join(',');
    const stats = { ...STATS, reduction: { ...STATS.reduction, method: 'ficoco-l', params: { schedule } } };
    assert.deepEqual(parseAnswerStats(JSON.parse(JSON.stringify(stats))), stats);
  });

  test('a hostile server is refused field by field', () => {
    const parse = (value: unknown) => parseAnswerStats(value, 'ficoco.stats');
    assert.match(
      refusal(parse, { ...STATS, provider: 'tpu' }),
      /ficoco\.stats\.provider is "tpu"; expected one of cpu/,
    );
    assert.match(
      refusal(parse, { ...STATS, patchFates: [{ rows: 2, cols: 2, patches: 'kk<script>' }] }),
      /ficoco\.stats\.patchFates\[0\]\.patches must be 4 of k, m or d/,
    );
    assert.match(
      refusal(parse, {
        ...STATS,
        patchFates: [{ rows: 2, cols: 2, patches: 'kmkd', tileBorders: { rows: [9], cols: [] } }],
      }),
      /tileBorders\.rows\[0\] must lie inside the 2-patch grid/,
    );
    // Grids no model makes, which the overlay would draw patch by patch, are refused before their patches are read.
    const tiled = { rows: 1, cols: 1, patches: 'k', tileBorders: { rows: [], cols: [] } };
    assert.match(
      refusal(parse, { ...STATS, patchFates: [{ ...tiled, thumbnail: { rows: 2, cols: 2 } }] }),
      /ficoco\.stats\.patchFates\[0\]\.thumbnail\.patches is missing/,
    );
    assert.match(
      refusal(parse, { ...STATS, patchFates: [{ rows: 4000, cols: 4000, patches: 'k' }] }),
      /patchFates\[0\] has 4000 × 4000 patches; at most 1048576 are drawn/,
    );
    assert.match(
      refusal(parse, { ...STATS, patchFates: [{ ...tiled, thumbnail: { rows: 200, cols: 200, patches: '' } }] }),
      /thumbnail has 200 × 200 patches; at most 16384 are drawn/,
    );
    assert.match(
      refusal(parse, { ...STATS, patchFates: [{ ...tiled, thumbnail: { rows: 1, cols: 2, patches: 'kk' } }] }),
      /thumbnail is 1 × 2; a thumbnail is square/,
    );
    assert.match(
      refusal(parse, { ...STATS, patchFates: [{ rows: 1, cols: 1, patches: 'k', thumbnail: tiled }] }),
      /thumbnail comes only with a tiled image's tileBorders/,
    );
    const cropped = { rows: 1, cols: 1, patches: 'k', seen: { left: 0.25, top: 0, width: 0.5, height: 1 } };
    assert.deepEqual(parse({ ...STATS, patchFates: [cropped] }).patchFates, [cropped]);
    assert.match(
      refusal(parse, { ...STATS, patchFates: [{ ...cropped, seen: { ...cropped.seen, width: 0 } }] }),
      /patchFates\[0\]\.seen is 0 × 1; a region has an area/,
    );
    assert.match(
      refusal(parse, { ...STATS, patchFates: [{ ...cropped, seen: { ...cropped.seen, left: 1e9 } }] }),
      /patchFates\[0\]\.seen\.left is 1000000000; expected a number from -64 to 64/,
    );
    assert.match(
      refusal(parse, { ...STATS, patchFates: [{ ...tiled, seen: cropped.seen }] }),
      /patchFates\[0\]\.seen comes only with an image seen whole, not tiled/,
    );
    assert.match(
      refusal(parse, { ...STATS, patchFates: [...STATS.patchFates!, ...STATS.patchFates!] }),
      /patchFates has 2 images; the answer read 1/,
    );
    assert.match(refusal(parse, { ...STATS, visualTokens: [{ original: -1, atDecoder: 0 }] }), /original is -1/);
    assert.match(refusal(parse, { ...STATS, flops: { run: flops } }), /ficoco\.stats\.flops\.unreduced is missing/);
    assert.match(
      refusal(parse, { ...STATS, reduction: { ...STATS.reduction, params: { window: {} } } }),
      /reduction\.params\.window is an object; expected a short value/,
    );
  });

  test('stats are about the images sent, and bounded where the chat shows them', () => {
    const parse = (value: unknown) => parseAnswerStats(value, 'ficoco.stats', 1);
    assert.deepEqual(parse(JSON.parse(JSON.stringify(STATS))), STATS);
    // A question with one image: stats about more (each one a grid the overlay draws) are another question's.
    const grid = STATS.patchFates![0];
    assert.match(
      refusal(parse, {
        ...STATS,
        visualTokens: Array(64).fill(STATS.visualTokens[0]),
        patchFates: Array(64).fill(grid),
      }),
      /ficoco\.stats\.visualTokens has 64 images; the question sent 1/,
    );
    assert.match(
      refusal((value) => parseAnswerStats(value, 'ficoco.stats', 0), STATS),
      /visualTokens has 1 images; the question sent 0/,
    );
    // Tile borders: each one an element of the overlay, in order inside the grid; a shrunk grid's fall between cells.
    const tiled = (rows: number[]) => ({
      ...STATS,
      patchFates: [{ rows: 4, cols: 4, patches: 'k'.repeat(16), tileBorders: { rows, cols: [] } }],
    });
    assert.deepEqual(parse(tiled([1.5, 3])).patchFates![0].tileBorders, { rows: [1.5, 3], cols: [] });
    assert.match(
      refusal(parse, tiled(Array(4_000_000).fill(1))),
      /tileBorders\.rows has 4000000 borders; a 4-patch side has at most 3/,
    );
    assert.match(refusal(parse, tiled([1, 1])), /tileBorders\.rows\[1\] is 1; each border lies after the one before/);
    assert.match(refusal(parse, tiled([3, 2])), /tileBorders\.rows\[1\] is 2; each border lies after the one before/);
    // Text the chat shows, and the steps, have bounds no engine comes near.
    const step = STATS.steps[0];
    assert.match(refusal(parse, { ...STATS, steps: Array(10_001).fill(step) }), /steps has 10001 steps; at most 10000/);
    assert.match(
      refusal(parse, { ...STATS, steps: [{ ...step, site: 'x'.repeat(65) }] }),
      /steps\[0\]\.site has 65 characters; at most 64 are read/,
    );
    assert.match(
      refusal(parse, { ...STATS, reduction: { ...STATS.reduction, why: 'x'.repeat(20_000) } }),
      /reduction\.why has 20000 characters; at most 16384 are read/,
    );
    assert.match(
      refusal(parse, { ...STATS, providerFallback: 'x'.repeat(20_000) }),
      /providerFallback has 20000 characters/,
    );
    // The reduction's name, budget and parameters, shown beside the answer.
    assert.match(
      refusal(parse, { ...STATS, reduction: { ...STATS.reduction, method: 'x'.repeat(65) } }),
      /reduction\.method has 65 characters; at most 64 are read/,
    );
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`p${i}`, i]));
    assert.match(
      refusal(parse, { ...STATS, reduction: { ...STATS.reduction, params: many } }),
      /reduction\.params has more than 64 entries/,
    );
    assert.match(
      refusal(parse, { ...STATS, reduction: { ...STATS.reduction, params: { window: 'x'.repeat(1025) } } }),
      /reduction\.params\.window is .*; expected a short value/,
    );
  });
});

test('base64 lengths: encoded from bytes, and decoded bytes from text, padding counted', () => {
  for (const bytes of [0, 1, 2, 3, 4, 5, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1]) {
    const text = Buffer.alloc(bytes).toString('base64');
    assert.equal(base64Length(bytes), text.length, `${bytes} bytes`);
    assert.equal(decodedLength(text), bytes, `${bytes} bytes`);
  }
});

test('a value named in a refusal reads as English: "an object", "an array", "a function"', () => {
  const described = [undefined, null, [], {}, () => 1, Symbol('s'), 1n, 'x'.repeat(41), 'ok', 2, false].map(
    describeValue,
  );
  assert.deepEqual(described, [
    'missing',
    'null',
    'an array',
    'an object',
    'a function',
    'a symbol',
    'a bigint',
    'a 41-character string',
    '"ok"',
    '2',
    'false',
  ]);
});

/** The names of the fields, at any depth, that `A` has and `B` lacks; never when `B` has them all. */
type FieldsOnlyIn<A, B> = A extends readonly (infer ItemOfA)[]
  ? B extends readonly (infer ItemOfB)[]
    ? FieldsOnlyIn<ItemOfA, ItemOfB>
    : never
  : A extends object
    ? { [K in keyof A]-?: K extends keyof B ? FieldsOnlyIn<NonNullable<A[K]>, NonNullable<B[K]>> : K }[keyof A]
    : never;

/** A field one side of the answer stats names and the other lacks; never while they agree. */
type AnswerStatsDrift = FieldsOnlyIn<EngineAnswerStats, AnswerStats> | FieldsOnlyIn<AnswerStats, EngineAnswerStats>;

test("the engine's answer stats and the protocol's name the same fields, at every depth", () => {
  // The protocol may not import the engine, whose stats name the reduction's and the flops layer's types: the host's
  // assignment checks the types, and the compiler here that neither side has a field the other lacks.
  const agreed: [AnswerStatsDrift] extends [never] ? true : AnswerStatsDrift = true;
  assert.equal(agreed, true);
});
