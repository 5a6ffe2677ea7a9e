import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ImagePixels, LlavaEngine } from '../../src/engine/engine';
import { NO_REDUCTION, type ReductionRequest } from '../../src/common/reductionChoice';
import { StepRecord } from '../../src/reduction/paradigm';
import { cosineMatrix } from '../../src/reduction/arrays';
import { METHODS, planHooks, planReduction } from '../../src/reduction/registry';
import { HookSite, ReductionHook, SiteView } from '../../src/reduction/tokenState';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const QUESTION = 'what colour is the big box ?';
/** 12 / 8 / 4 of the fixture's 36 patches are 192 / 128 / 64 of CLIP-L's 576. */
const BUDGETS = [12, 8, 4];

/** A CLIP tower with its [CLS] token, and a SigLIP tower without one (the class-token-free paths of every method). */
const TOWERS = ['tiny-llava-llama', 'tiny-llava-siglip-qwen2'];

for (const fixture of TOWERS)
  describe(`every reduction method runs end to end on ${fixture}`, () => {
    let engine: LlavaEngine;
    let pixels: ImagePixels;
    let inputIds: number[];
    let unreducedLogits: Float32Array;
    before(async () => {
      engine = await LlavaEngine.load(path.join(FIXTURES, fixture));
      pixels = await engine.pixelValues(fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')), 'shapes.png');
      inputIds = engine.text.encode(
        await engine.text.renderPrompt([
          { role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] },
        ]),
      );
      unreducedLogits = (await engine.generate(inputIds, [pixels], { maxNewTokens: 1 })).prefillLogits;
    });
    after(() => engine.dispose());

    for (const method of METHODS) {
      for (const keep of BUDGETS) {
        test(`${method.name} keeping ${keep} of 36 visual tokens answers, and its steps end at ${keep}`, async () => {
          const plan = planReduction(method.name, { tokens: keep }, engine.reductionShape);
          const log: StepRecord[] = [];
          const result = await engine.generate(inputIds, [pixels], {
            maxNewTokens: 4,
            stopTokenIds: [],
            hooks: planHooks(plan, log),
          });
          assert.equal(result.tokenIds.length, 4);
          assert.ok(result.prefillLogits.every(Number.isFinite));
          assert.ok(log.length > 0);
          assert.deepEqual(log[log.length - 1].after, [keep]);
          assert.equal(result.steps.length, log.length);
          // A layer's cache holds the tokens that entered it: a step at llm:ℓ acts after ℓ's attention (§8 #14).
          const entering = result.cacheLengths.map((_, layer) =>
            log.reduce((left, step) => {
              const at = /^llm:(\d+)$/.exec(step.site);
              return at && Number(at[1]) < layer ? left - (step.before[0] - step.after[0]) : left;
            }, result.promptTokens),
          );
          assert.deepEqual(result.cacheLengths, entering);
          assert.ok(
            result.flops.run.total < result.flops.unreduced.total,
            'fewer analytic FLOPs than the unreduced run',
          );
        });
      }

      test(`${method.name} with a budget of every token reproduces the unreduced logits exactly`, async () => {
        const plan = planReduction(method.name, { ratio: 1 }, engine.reductionShape);
        const result = await engine.generate(inputIds, [pixels], { maxNewTokens: 1, hooks: planHooks(plan) });
        assert.equal(plan.steps.length, 0);
        assert.deepEqual(Array.from(result.prefillLogits), Array.from(unreducedLogits));
        assert.deepEqual(result.flops.run, result.flops.unreduced);
      });
    }
  });

describe('runs asked at once on one engine', () => {
  test('go one at a time: two decoder plans at once answer as each does alone', async () => {
    // Loading a plan's sessions releases another plan's, which the first run was still decoding with.
    const engine = await LlavaEngine.load(path.join(FIXTURES, 'tiny-llava-llama'), { threads: 1 });
    try {
      const image = { bytes: fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')), name: 'shapes.png' };
      const ask = (method: string) =>
        engine.ask({
          question: QUESTION,
          images: [image],
          maxNewTokens: 12,
          reduction: { method, budget: { tokens: 16 } },
        });
      const alone = [(await ask('fastv')).tokenIds, (await ask('pdrop')).tokenIds];
      const together = await Promise.all([ask('fastv'), ask('pdrop')]);
      assert.deepEqual(
        together.map((answer) => answer.tokenIds),
        alone,
      );
    } finally {
      await engine.dispose();
    }
  });

  test("a warm-up of another plan asked during an answer waits for it: the answer's sessions stay", async () => {
    // Above this many FLOPs a warm-up only builds its plan's sessions (0: every model, the fixture too).
    const engine = await LlavaEngine.load(path.join(FIXTURES, 'tiny-llava-llama'), {
      threads: 1,
      warmUpRepeatsBelowFlops: 0,
    });
    try {
      const image = { bytes: fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')), name: 'shapes.png' };
      let warm: Promise<void> | undefined;
      const answer = await engine.ask({
        question: QUESTION,
        images: [image],
        maxNewTokens: 12,
        reduction: { method: 'fastv', budget: { tokens: 16 } },
        onText: () => (warm ??= engine.warmUp({ method: 'pdrop', budget: { tokens: 16 } })),
      });
      await warm;
      assert.ok(answer.tokenIds.length > 0);
    } finally {
      await engine.dispose();
    }
  });
});

for (const fixture of ['tiny-llava-siglip-qwen2', 'tiny-llava-onevision-qwen2'])
  test(`a large model's warm-up runs every method's tower on a blank pass and leaves its answers as they were on ${fixture}`, async () => {
    // Above this many FLOPs a warm-up builds its plan's sessions and runs one tower pass (0: every model, the fixture too).
    const warmed = await LlavaEngine.load(path.join(FIXTURES, fixture), { threads: 1, warmUpRepeatsBelowFlops: 0 });
    const cold = await LlavaEngine.load(path.join(FIXTURES, fixture), { threads: 1 });
    try {
      const image = { bytes: fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')), name: 'shapes.png' };
      for (const method of METHODS) {
        const reduction = { method: method.name, budget: { ratio: 0.25 } };
        await warmed.warmUp(reduction);
        const answer = (engine: LlavaEngine) =>
          engine.ask({ question: QUESTION, images: [image], reduction, maxNewTokens: 4 });
        assert.deepEqual((await answer(warmed)).tokenIds, (await answer(cold)).tokenIds, method.name);
      }
    } finally {
      await Promise.all([warmed.dispose(), cold.dispose()]);
    }
  });

/** Every method with a step inside the decoder, and FiCoCo-L reading probabilities instead of logits. */
const DECODER_METHODS = METHODS.filter((method) =>
  planReduction(
    method.name,
    { tokens: 8 },
    { visualTokens: 36, grid: { rows: 6, cols: 6 }, hasClassToken: true, textLayers: 4, visionLayers: 4 },
  ).steps.some((step) => step.site.startsWith('llm:')),
).map((method) => ({ name: method.name, params: {} }));

for (const fixture of TOWERS)
  describe(`decoder-side methods read the same prompt in one run and in chunks on ${fixture}`, () => {
    let whole: LlavaEngine;
    let chunked: LlavaEngine;
    let pixels: ImagePixels;
    let inputIds: number[];
    before(async () => {
      whole = await LlavaEngine.load(path.join(FIXTURES, fixture));
      chunked = await LlavaEngine.load(path.join(FIXTURES, fixture), { prefillChunkTokens: 7 });
      pixels = await whole.pixelValues(fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')), 'shapes.png');
      inputIds = whole.text.encode(
        await whole.text.renderPrompt([
          { role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] },
        ]),
      );
    });
    after(async () => {
      await whole.dispose();
      await chunked.dispose();
    });

    for (const { name, params } of [...DECODER_METHODS, { name: 'ficoco-l', params: { attention: 'probs' } }])
      test(`${name} ${JSON.stringify(params)}: the same patches kept, tokens and logits`, async () => {
        const run = (engine: LlavaEngine) =>
          engine.generate(inputIds, [pixels], {
            maxNewTokens: 4,
            stopTokenIds: [],
            hooks: engine.reductionHooks({ method: name, budget: { tokens: 8 }, params }, [pixels.size]),
          });
        const [inOne, inChunks] = [await run(whole), await run(chunked)];
        assert.ok(inChunks.promptTokens > 7 * 3, 'the prompt spans several chunks');
        assert.deepEqual(inChunks.patchFates, inOne.patchFates);
        assert.deepEqual(inChunks.tokenIds, inOne.tokenIds);
        for (let i = 0; i < inOne.prefillLogits.length; i++)
          assert.ok(Math.abs(inChunks.prefillLogits[i] - inOne.prefillLogits[i]) < 1e-4);
      });
  });

describe('the engine computes what hooks ask for', () => {
  let engine: LlavaEngine;
  before(async () => {
    engine = await LlavaEngine.load(path.join(FIXTURES, 'tiny-llava-llama'));
  });
  after(() => engine.dispose());

  /** Runs `check` on the view a hook with `needs` sees at each site, and fails if a hook never ran. */
  async function checkViews(
    sites: readonly HookSite[],
    needs: ReductionHook['needs'],
    check: (view: SiteView) => void,
  ): Promise<void> {
    const pixels = await engine.pixelValues(fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')), 'shapes.png');
    const ids = engine.text.encode(
      await engine.text.renderPrompt([
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] },
      ]),
    );
    for (const site of sites) {
      let checked = false;
      const hook: ReductionHook = {
        site,
        needs,
        reduce(view) {
          check(view);
          checked = true;
          return view;
        },
      };
      await engine.generate(ids, [pixels], { maxNewTokens: 1, hooks: [hook] });
      assert.ok(checked, `the hook at ${site} ran`);
    }
  }

  function assertClose(actual: Float32Array | undefined, expected: Float32Array): void {
    assert.equal(actual?.length, expected.length);
    for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(actual![i] - expected[i]) < 1e-5);
  }

  test('hidden-state cosine similarity from the graph equals the one computed from the same hidden states', async () => {
    await checkViews(['projector', 'llm:1'], { hiddenCosine: true }, (view) =>
      assertClose(view.hiddenCosine, cosineMatrix(view.hidden, view.count, view.width)),
    );
  });

  test('key cosine similarity from the graph equals the one computed from the same head-averaged keys', async () => {
    await checkViews(['vision:1', 'llm:1'], { keys: true, keyCosine: true }, (view) =>
      assertClose(view.keyCosine, cosineMatrix(view.meanKeys!, view.keyCount, view.meanKeys!.length / view.keyCount)),
    );
  });
});

describe('ask with a reduction method', () => {
  test('the engine option plans the method and the stats show its steps; a bad method name is refused', async () => {
    const engine = await LlavaEngine.load(path.join(FIXTURES, 'tiny-llava-llama'));
    try {
      const image = { bytes: fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')), name: 'shapes.png' };
      const answer = await engine.ask({
        question: QUESTION,
        images: [image],
        maxNewTokens: 3,
        reduction: { method: 'ficoco-v', budget: { tokens: 8 } },
      });
      assert.deepEqual(answer.stats.visualTokens, [{ original: 36, atDecoder: 8 }]);
      assert.deepEqual(
        answer.stats.steps.map((s) => [s.tokensBefore, s.tokensAfter]),
        [[36, 8]],
      );
      assert.ok(answer.stats.flops.run.total < answer.stats.flops.unreduced.total);
      await assert.rejects(
        engine.ask({ question: QUESTION, images: [image], reduction: { method: 'nope', budget: { tokens: 8 } } }),
        /Unknown reduction method "nope"; available: ficoco-v/,
      );
      await assert.rejects(
        engine.ask({
          question: QUESTION,
          images: [image],
          reduction: { method: 'ficoco-v', budget: { tokens: 8 }, params: { epsilon: 2 } },
        }),
        /ficoco-v\.epsilon is 2; expected a number in \[0\.5, 1\]/,
      );
    } finally {
      await engine.dispose();
    }
  });

  test('method none (NO_REDUCTION) answers with every visual token, without a budget, as no reduction does', async () => {
    const engine = await LlavaEngine.load(path.join(FIXTURES, 'tiny-llava-llama'));
    try {
      const image = { bytes: fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png')), name: 'shapes.png' };
      const ask = (reduction?: ReductionRequest) =>
        engine.ask({ question: QUESTION, images: [image], maxNewTokens: 3, reduction });
      const [unreduced, none] = [await ask(), await ask({ method: NO_REDUCTION })];
      assert.deepEqual(none.tokenIds, unreduced.tokenIds);
      assert.deepEqual(none.stats.visualTokens, [{ original: 36, atDecoder: 36 }]);
      assert.deepEqual(none.stats.steps, []);
      assert.equal(none.stats.reduction, undefined, 'no reduction ran, as without one');
    } finally {
      await engine.dispose();
    }
  });
});
