import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { anyresLayout } from '../../src/common/anyres';
import { FicocoError } from '../../src/common/errors';
import { LlavaEngine, type PrefillProgress } from '../../src/engine/engine';
import { tiledRunShape } from '../../src/cli/runShape';
import { flopsArchOf } from '../../src/engine/models/flopsArch';
import { archForImage, runFlops } from '../../src/flops';
import { keptTokens } from '../../src/reduction/method';
import { cosineMatrix } from '../../src/reduction/arrays';
import { maxMinDiverse } from '../../src/reduction/stages/diversity';
import { classAttention } from '../../src/reduction/stages/importance';
import {
  type HookSite,
  type ReductionHook,
  type SiteView,
  type TokenState,
  siteStage,
} from '../../src/reduction/tokenState';
import { removedTokens } from '../../src/reduction/paradigm';
import { keptPerPass, planTiledReduction } from '../../src/reduction/tiled';
import { METHODS } from '../../src/reduction/registry';
import { screenshotPng } from '../../tools/screenshotPng';
import { runCli } from '../helpers/cli';

const ROOT = path.join(__dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const QUESTION = 'what is shown ?';

/** Prompt tokens of one image and QUESTION besides the image's own (its placeholder left out). */
async function questionTextTokens(engine: LlavaEngine): Promise<number> {
  const prompt = await engine.text.renderPrompt([
    { role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] },
  ]);
  return engine.text.encode(prompt).length - 1;
}

for (const fixture of ['tiny-llava-onevision-qwen2', 'tiny-llava-next-mistral']) {
  describe(`a 1920 × 1080 screenshot on a tiled model: ${fixture}`, () => {
    const dir = path.join(FIXTURES, fixture);
    const bytes = screenshotPng();
    let engine: LlavaEngine;
    let folder: string;
    before(async () => {
      engine = await LlavaEngine.load(dir);
      folder = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-tiled-'));
      fs.writeFileSync(path.join(folder, 'screenshot.png'), bytes);
    });
    after(async () => {
      await engine.dispose();
      fs.rmSync(folder, { recursive: true, force: true });
    });
    /** The screenshot asked about with one hook (a method's, watched), for one answer token. */
    const askWithHook = (hook: ReductionHook) =>
      engine.ask({ question: QUESTION, images: [{ bytes, name: 'screenshot.png' }], hooks: [hook], maxNewTokens: 1 });

    test("the prompt holds the processor's number of image tokens", async () => {
      const answer = await engine.ask({
        question: QUESTION,
        images: [{ bytes, name: 'screenshot.png' }],
        maxNewTokens: 3,
      });
      const tokens = anyresLayout(engine.config.tiling!, { width: 1920, height: 1080 }).tokens;
      assert.deepEqual(answer.stats.visualTokens, [{ original: tokens, atDecoder: tokens }]);
      assert.equal(answer.stats.promptTokens, (await questionTextTokens(engine)) + tokens);
      assert.equal(answer.stats.flops.run.total, answer.stats.flops.unreduced.total);
    });

    test('FasterVLM ranks the base image and the tiles together: the best [CLS] attention of all passes stays', async () => {
      const size = { width: 1920, height: 1080 };
      const [hook] = engine.reductionHooks({ method: 'fastervlm', budget: { ratio: 0.5 } }, [size]);
      const seen: { views: readonly SiteView[]; kept: TokenState[] } = { views: [], kept: [] };
      const watching: ReductionHook = {
        ...hook,
        reducePasses: (views) => Object.assign(seen, { views, kept: hook.reducePasses!(views) }).kept,
      };
      const answer = await askWithHook(watching);
      const layout = anyresLayout(engine.config.tiling!, size);
      const budget = keptTokens({ ratio: 0.5 }, layout.tokens - layout.grid.rows);
      assert.equal(seen.views.length, layout.tiles.rows * layout.tiles.cols + 1, 'every pass was ranked at once');
      const tokens = seen.views.flatMap((view, pass) => {
        const [span] = view.spans;
        const kept = new Set(seen.kept[pass].spans[0].tokenPatch);
        return Array.from(classAttention(view, span), (score, t) => ({
          score,
          pass,
          kept: kept.has(span.tokenPatch[t]),
        }));
      });
      assert.equal(tokens.filter((token) => token.kept).length, budget);
      // Beyond each pass's own best token (which it always keeps), every kept token outranks every dropped one.
      const best = seen.views.map((_, pass) => Math.max(...tokens.filter((t) => t.pass === pass).map((t) => t.score)));
      const keptBeyondBest = tokens.filter((t) => t.kept && t.score < best[t.pass]).map((t) => t.score);
      const dropped = tokens.filter((t) => !t.kept).map((t) => t.score);
      assert.ok(Math.min(...keptBeyondBest) >= Math.max(...dropped));
      // The ranking, not each pass's share of the image, decided how many each pass keeps.
      const plan = planTiledReduction({ method: 'fastervlm', budget: { ratio: 0.5 } }, engine.reductionShape, {
        size,
        layout,
      });
      const perPass = seen.kept.map((state) => state.spans[0].count);
      assert.notDeepEqual(perPass, keptPerPass(plan));
      assert.deepEqual(
        answer.stats.steps.filter((step) => step.site === 'features').map((step) => step.tokensAfter),
        perPass,
      );
    });

    test('DivPrune chooses from the packed image: base image and tiles as one set, row ends set aside', async () => {
      const size = { width: 1920, height: 1080 };
      const [hook] = engine.reductionHooks({ method: 'divprune', budget: { ratio: 0.25 } }, [size]);
      const seen: { view?: SiteView; kept?: TokenState } = {};
      const watching: ReductionHook = {
        ...hook,
        reduce: (view) => Object.assign(seen, { view, kept: hook.reduce(view) }).kept!,
      };
      const answer = await askWithHook(watching);
      const layout = anyresLayout(engine.config.tiling!, size);
      const content = layout.tokens - layout.grid.rows;
      const keep = keptTokens({ ratio: 0.25 }, content);
      const view = seen.view!;
      assert.equal(view.site, 'packed');
      assert.equal(view.count, content, 'every content token of the packed image, no row end');
      // The engine's cosine is over exactly the tokens the view holds.
      const cosine = cosineMatrix(view.hidden, view.count, view.width);
      assert.ok(view.hiddenCosine!.every((value, i) => Math.abs(value - cosine[i]) < 1e-4));
      const chosen = maxMinDiverse(view.hiddenCosine!, view.count, view.spans[0], keep).sort((a, b) => a - b);
      assert.deepEqual(
        Array.from(seen.kept!.spans[0].tokenPatch),
        chosen.map((t) => view.spans[0].tokenPatch[t]),
      );
      assert.deepEqual(
        answer.stats.steps.map(({ site, tokensBefore, tokensAfter }) => ({ site, tokensBefore, tokensAfter })),
        [{ site: 'packed', tokensBefore: content, tokensAfter: keep }],
      );
      // Every row end stays: the decoder reads the budget and the grid's rows.
      assert.deepEqual(answer.stats.visualTokens, [{ original: layout.tokens, atDecoder: keep + layout.grid.rows }]);
      // The overlay shows every kept token: on the screenshot's grid, or on the thumbnail (the base image).
      const [fates] = answer.stats.patchFates!;
      const kept = (patches: string) => [...patches].filter((fate) => fate === 'k').length;
      assert.equal(fates.thumbnail!.patches.length, engine.config.tiling!.featuresPerSide ** 2);
      assert.equal(kept(fates.thumbnail!.patches) + kept(fates.patches), keep);
      assert.ok(kept(fates.thumbnail!.patches) > 0 && kept(fates.patches) > 0, 'both keep some');
    });

    test('two images in one question: OneVision sees each whole, padded square; NeXT tiles each', async () => {
      const shapes = fs.readFileSync(path.join(FIXTURES, 'images', 'shapes.png'));
      const answer = await engine.ask({
        question: QUESTION,
        images: [
          { bytes, name: 'screenshot.png' },
          { bytes: shapes, name: 'shapes.png' },
        ],
        maxNewTokens: 2,
      });
      const tiling = engine.config.tiling!;
      const expected = engine.config.squareWhenSeveral
        ? [tiling.baseTokens + 1, tiling.baseTokens + 1]
        : [
            anyresLayout(tiling, { width: 1920, height: 1080 }).tokens,
            anyresLayout(tiling, { width: 96, height: 64 }).tokens,
          ];
      assert.deepEqual(
        answer.stats.visualTokens.map((image) => image.original),
        expected,
      );
      assert.deepEqual(
        answer.stats.visualTokens.map((image) => image.atDecoder),
        expected,
      );
      // The overlay's grid (a library hook that keeps every token asks for it): an image seen whole is its one pass's
      // patches; a tiled one, its grid's cells.
      const kept = await engine.ask({
        question: QUESTION,
        images: [
          { bytes, name: 'screenshot.png' },
          { bytes: shapes, name: 'shapes.png' },
        ],
        hooks: [{ site: 'packed', needs: {}, reduce: (view) => view }],
        maxNewTokens: 1,
      });
      const side = tiling.featuresPerSide;
      const grids = engine.config.squareWhenSeveral
        ? [
            { rows: side, cols: side },
            { rows: side, cols: side },
          ]
        : [
            anyresLayout(tiling, { width: 1920, height: 1080 }).grid,
            anyresLayout(tiling, { width: 96, height: 64 }).grid,
          ];
      assert.deepEqual(
        kept.stats.patchFates!.map(({ rows, cols, patches }) => ({ rows, cols, patches })),
        grids.map(({ rows, cols }) => ({ rows, cols, patches: 'k'.repeat(rows * cols) })),
      );
      // Seen whole, the 1920 × 1080 screenshot sits in the middle of its padded square: the overlay places it there,
      // the grid covering as much of the square as the patches do (SigLIP's stop 6 pixels short of 384).
      const { imageSize, patchSize, patchesPerSide } = engine.config.vision;
      const covered = (patchesPerSide * patchSize) / imageSize;
      assert.deepEqual(
        kept.stats.patchFates!.map(({ seen }) => seen),
        engine.config.squareWhenSeveral
          ? [
              { left: 0, top: -420 / 1080, width: covered, height: (1920 / 1080) * covered },
              { left: 0, top: -16 / 64, width: covered, height: (96 / 64) * covered },
            ]
          : [undefined, undefined],
      );
    });

    test('a reduction takes one image per question on a tiled model', async () => {
      await assert.rejects(
        engine.ask({
          question: QUESTION,
          images: [
            { bytes, name: 'a.png' },
            { bytes, name: 'b.png' },
          ],
          reduction: { method: 'ficoco-v', budget: { ratio: 0.11 } },
          maxNewTokens: 1,
        }),
        (error: unknown) =>
          error instanceof FicocoError && error.kind === 'reduction' && /one image/.test(error.message),
      );
    });

    test('a question without an image answers with a reduction set, unreduced (nothing to reduce)', async () => {
      for (const method of ['ficoco-v', 'ficoco-vl']) {
        const answer = await engine.ask({
          question: 'what is a tile ?',
          images: [],
          reduction: { method, budget: { ratio: 0.11 } },
          maxNewTokens: 2,
        });
        assert.equal(answer.stats.generatedTokens, 2);
        assert.deepEqual(answer.stats.steps, []);
        assert.equal(answer.stats.reduction, undefined, 'not a reduced answer: no speedup to measure');
      }
      await assert.rejects(
        engine.ask({ question: 'hi', images: [], reduction: { method: 'nope', budget: { ratio: 0.11 } } }),
        (error: unknown) => error instanceof FicocoError && error.kind === 'reduction' && /"nope"/.test(error.message),
        'a bad setting is still refused',
      );
    });

    test('warming up for a token budget the small blank image cannot hold is fine; a bad method is not', async () => {
      // The CLI warms up with the reduction it was given before asking about the real screenshot.
      await engine.warmUp({ method: 'ficoco-v', budget: { tokens: 100 } });
      await assert.rejects(
        engine.warmUp({ method: 'nope', budget: { tokens: 100 } }),
        (error: unknown) => error instanceof FicocoError && error.kind === 'reduction',
      );
    });

    test('auto gives way to every visual token where two images cannot be reduced, and says why', async () => {
      const answer = await engine.ask({
        question: QUESTION,
        images: [
          { bytes, name: 'a.png' },
          { bytes, name: 'b.png' },
        ],
        reduction: { method: 'auto', params: {} },
        maxNewTokens: 1,
      });
      assert.equal(answer.stats.reduction?.method, 'none');
      assert.match(answer.stats.reduction!.why, /reduces one image per question and this one has 2/);
      assert.deepEqual(answer.stats.steps, []);
    });

    test('progress: the base image and every tile, then the prompt, its work shrinking after a decoder step', async () => {
      const events: PrefillProgress[] = [];
      const answer = await engine.ask({
        question: QUESTION,
        images: [{ bytes, name: 'screenshot.png' }],
        reduction: { method: 'fastv', budget: { ratio: 0.25 } },
        maxNewTokens: 2,
        onProgress: (progress) => events.push(progress),
      });
      const { tiles } = anyresLayout(engine.config.tiling!, { width: 1920, height: 1080 });
      const passes = 1 + tiles.rows * tiles.cols;
      const image = events.filter((event) => event.stage === 'image');
      assert.deepEqual(
        image.map(({ stage, done, total }) => ({ stage, done, total })),
        Array.from({ length: passes + 1 }, (_, i) => ({ stage: 'image', done: i, total: passes })),
      );
      // From the first pass on, each report foretells the run it starts: every later pass, the first chunk.
      const foretold = events.map((event) => event.nextRunMs !== undefined);
      assert.deepEqual(foretold.slice(1, passes + 2), [...Array<boolean>(passes - 1).fill(true), false, true]);
      const prompt = events.slice(passes + 1);
      assert.ok(prompt.length >= 2 && prompt.every((event) => event.stage === 'prompt'));
      // Every prompt token through every block of the decoder.
      assert.equal(prompt[0].total % answer.stats.promptTokens, 0);
      assert.ok(prompt[0].total / answer.stats.promptTokens > engine.config.text.layers);
      for (const [i, event] of prompt.entries()) {
        assert.ok(event.done <= event.total);
        if (i > 0) assert.ok(event.done > prompt[i - 1].done && event.total <= prompt[i - 1].total);
      }
      assert.ok(prompt.at(-1)!.total < prompt[0].total, 'FastV drops tokens, so less work is left');
      assert.equal(prompt.at(-1)!.done, prompt.at(-1)!.total);
    });

    test('Stop while the tiles are read ends the question there; the next one answers as before', async () => {
      const question = { question: QUESTION, images: [{ bytes, name: 'screenshot.png' }], maxNewTokens: 3 };
      const before = await engine.ask(question);
      const stop = new AbortController();
      const events: PrefillProgress[] = [];
      await assert.rejects(
        engine.ask({
          ...question,
          signal: stop.signal,
          onProgress: (progress) => {
            events.push(progress);
            if (progress.done === 2) stop.abort();
          },
        }),
        (error: unknown) => error instanceof FicocoError && error.kind === 'cancelled',
      );
      assert.deepEqual(
        events.map(({ stage, done }) => `${stage} ${done}`),
        ['image 0', 'image 1', 'image 2'],
      );
      const again = await engine.ask(question);
      assert.deepEqual(again.tokenIds, before.tokenIds);
    });

    test('Stop while the prompt is read ends the question before its first token', async () => {
      const stop = new AbortController();
      const stages: string[] = [];
      await assert.rejects(
        engine.ask({
          question: QUESTION,
          images: [{ bytes, name: 'screenshot.png' }],
          maxNewTokens: 3,
          signal: stop.signal,
          onText: () => assert.fail('no text after Stop'),
          onProgress: (progress) => {
            stages.push(progress.stage);
            if (progress.stage === 'prompt') stop.abort();
          },
        }),
        (error: unknown) => error instanceof FicocoError && error.kind === 'cancelled',
      );
      assert.equal(stages.filter((stage) => stage === 'prompt').length, 1);
    });

    test('ficoco ask answers about it from the command line', async () => {
      const { stdout } = await runCli([
        'ask',
        '--model',
        dir,
        '--image',
        path.join(folder, 'screenshot.png'),
        '--max-new-tokens',
        '3',
        QUESTION,
      ]);
      assert.ok(stdout.trim().length > 0);
    });
  });
}

/** 11 %, 25 % and 50 % of an image's content tokens (the budget's share; row ends come on top). */
const BUDGETS = [0.11, 0.25, 0.5];

for (const fixture of ['tiny-llava-onevision-qwen2', 'tiny-llava-next-mistral']) {
  describe(`every reduction method spreads its budget over a tiled image: ${fixture}`, () => {
    const image = path.join(FIXTURES, 'images', 'screenshot.png');
    const size = { width: 160, height: 90 };
    let engine: LlavaEngine;
    let textTokens: number;
    before(async () => {
      engine = await LlavaEngine.load(path.join(FIXTURES, fixture));
      textTokens = await questionTextTokens(engine);
    });
    after(() => engine.dispose());

    for (const method of METHODS)
      for (const ratio of BUDGETS)
        test(`${method.name} at ${ratio * 100} %`, async () => {
          const answer = await engine.ask({
            question: QUESTION,
            images: [{ bytes: fs.readFileSync(image), name: 'screenshot.png' }],
            reduction: { method: method.name, budget: { ratio } },
            maxNewTokens: 2,
          });
          const layout = anyresLayout(engine.config.tiling!, size);
          const content = layout.tokens - layout.grid.rows;
          const keep = keptTokens({ ratio }, content);
          const { steps, flops, patchFates } = answer.stats;
          assert.ok(steps.length > 0);
          assert.ok(flops.run.total < flops.unreduced.total, 'fewer analytic FLOPs than unreduced');
          const onPacked = steps.filter((step) => siteStage(step.site as HookSite) !== 'tower');
          const inTower = steps.filter((step) => siteStage(step.site as HookSite) === 'tower');
          // Steps on the packed image see its content as one span (row ends set aside) and end at the budget,
          // whatever the tower handed them.
          if (onPacked.length > 0) assert.equal(onPacked.at(-1)!.tokensAfter, keep);
          // `ficoco flops --method` plans the same run: the tower's FLOPs exactly, the decoder's exactly where
          // only the decoder reduces (after the tower it counts every row end, an estimate).
          const arch = archForImage(flopsArchOf(engine.config, fixture), size);
          const plan = planTiledReduction({ method: method.name, budget: { ratio } }, engine.reductionShape, {
            size,
            layout,
          });
          if (inTower.length > 0) {
            // Every pass (base image and tiles) keeps the same share of its tokens on the image (a tile's padding goes
            // before its first step), and together they keep the budget — or, where decoder steps follow, what those
            // are planned to start from — or one token each, where that is more.
            // A method that ranks the passes together (Step.rank) gives each what it wins of the same total.
            const kept = keptPerPass(plan);
            const lastSite = inTower.at(-1)!.site;
            const atLastSite = inTower.filter((step) => step.site === lastSite).map((step) => step.tokensAfter);
            const total = kept.reduce((sum, tokens) => sum + tokens, 0);
            if (plan.perPass.at(-1)!.rank)
              assert.equal(
                atLastSite.reduce((sum, tokens) => sum + tokens, 0),
                total,
              );
            else assert.deepEqual(atLastSite, kept);
            const handed = keep + removedTokens(plan.onPacked);
            assert.equal(total, Math.max(handed, kept.length), `the passes keep ${total}; planned: ${handed}`);
            if (onPacked.length > 0 && handed > keep)
              assert.equal(onPacked[0].tokensBefore, total, 'the packed steps start from what the passes kept');
          }
          const planned = runFlops(arch, tiledRunShape(plan, engine.reductionShape, layout, textTokens));
          assert.ok(Math.abs(planned.vision - flops.run.vision) <= 1e-9 * flops.run.vision, 'tower FLOPs as planned');
          // The projector runs per pass, on what the tower hands it (before a step at its output).
          assert.ok(
            Math.abs(planned.projector - flops.run.projector) <= 1e-9 * flops.run.projector,
            'projector FLOPs as planned',
          );
          if (inTower.length === 0)
            assert.ok(Math.abs(planned.llm - flops.run.llm) <= 1e-9 * flops.run.llm, 'decoder FLOPs as planned');
          const [fates] = patchFates!;
          assert.equal(fates.patches.length, fates.rows * fates.cols);
          assert.match(fates.patches, /^[kmd]+$/);
          assert.ok(fates.tileBorders && fates.tileBorders.rows.length + fates.tileBorders.cols.length > 0);
        });
  });
}

test("a tiled model folder whose preprocessor pinpoints are other resolutions than config.json's is refused", async () => {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-pinpoints-'));
  try {
    fs.cpSync(path.join(FIXTURES, 'tiny-llava-next-mistral'), folder, { recursive: true });
    const file = path.join(folder, 'preprocessor_config.json');
    const preprocessor = JSON.parse(fs.readFileSync(file, 'utf8')) as { image_grid_pinpoints: number[][] };
    const pinpoints = preprocessor.image_grid_pinpoints;
    const write = (list: number[][]) =>
      fs.writeFileSync(file, JSON.stringify({ ...preprocessor, image_grid_pinpoints: list }));
    write(pinpoints.slice(1));
    await assert.rejects(
      LlavaEngine.load(folder),
      (error: unknown) =>
        error instanceof FicocoError &&
        error.kind === 'config' &&
        /"image_grid_pinpoints" holds other resolutions than config\.json's/.test(error.message),
    );
    // The same resolutions in another order tile alike but for ties: the folder loads.
    write([...pinpoints].reverse());
    await (await LlavaEngine.load(folder)).dispose();
  } finally {
    fs.rmSync(folder, { recursive: true, force: true });
  }
});

test('a tiled model folder whose image settings cut a tile to another size than the tower reads is refused', async () => {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-crop-'));
  try {
    fs.cpSync(path.join(FIXTURES, 'tiny-llava-next-mistral'), folder, { recursive: true });
    const file = path.join(folder, 'preprocessor_config.json');
    const preprocessor = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(file, JSON.stringify({ ...preprocessor, crop_size: { height: 24, width: 24 } }));
    await assert.rejects(
      LlavaEngine.load(folder),
      (error: unknown) =>
        error instanceof FicocoError &&
        error.kind === 'config' &&
        /turns a 32 × 32 image \(a tile\) into 24 × 24 pixels, and the vision tower reads 32 × 32/.test(error.message),
    );
  } finally {
    fs.rmSync(folder, { recursive: true, force: true });
  }
});

test("a hook at `packed` is checked before the image is read: what it asks for, and its matrix's memory", async () => {
  const dir = path.join(FIXTURES, 'tiny-llava-onevision-qwen2');
  const size = { width: 1920, height: 1080 };
  // A run reads the memory available twice: for the decoder's run, then for the packed image's pairwise matrix.
  let readings = 0;
  let forMatrix = Infinity;
  const engine = await LlavaEngine.load(dir, { availableMemory: () => (readings++ % 2 === 0 ? Infinity : forMatrix) });
  try {
    const progress: PrefillProgress[] = [];
    const ask = (hooks: ReductionHook[]) =>
      engine.ask({
        question: QUESTION,
        images: [{ bytes: screenshotPng(), name: 'screenshot.png' }],
        hooks,
        maxNewTokens: 1,
        onProgress: (report) => progress.push(report),
      });
    const [divprune] = engine.reductionHooks({ method: 'divprune', budget: { ratio: 0.25 } }, [size]);
    const tower = engine.reductionHooks({ method: 'random', budget: { ratio: 0.9 } }, [size]);
    await assert.rejects(
      ask([{ ...divprune, needs: { hiddenCosine: true, attention: 'probs' } }]),
      /the packed image has only its cosine to give; a hook there asked for attention/,
    );
    // Enough for the image's unreduced tokens; passes a tower hook thinned are packed unshrunk, and may bring more.
    const { tiling, text } = engine.config;
    const layout = anyresLayout(tiling!, size);
    const bytes = (tokens: number) => 2 * 4 * tokens ** 2 + 3 * 4 * tokens * text.hiddenSize;
    forMatrix = bytes(layout.tokens);
    const passes = 1 + layout.tiles.rows * layout.tiles.cols;
    const unshrunk = passes * (tiling!.featuresPerSide ** 2 + tiling!.featuresPerSide);
    await assert.rejects(
      ask([...tower, divprune]),
      new RegExp(`compares every pair of an image's visual tokens \\(${unshrunk}\\)`),
    );
    assert.deepEqual(progress, [], 'both refused before the image was read');
    assert.equal((await ask([divprune])).stats.steps.at(-1)!.site, 'packed');
  } finally {
    await engine.dispose();
  }
});
