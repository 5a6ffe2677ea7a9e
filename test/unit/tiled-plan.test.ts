/**
 * How a budget is spread over a tiled image (src/reduction/tiled.ts), on LLaVA-OneVision-0.5B's tiling of a
 * 1920 × 1080 screenshot: 16 passes of 729 tokens, an unpadded grid of 75 × 135 features that anyres_max_9 shrinks
 * to 60 × 108 when nothing thinned it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { anyresLayout } from '../../src/common/anyres';
import { archPreset } from '../../src/flops';
import type { ModelShape } from '../../src/reduction/method';
import { leavesByRank, removedTokens, stepHook, stepRemoval } from '../../src/reduction/paradigm';
import { METHODS, planReduction } from '../../src/reduction/registry';
import { keptPerPass, planTiledReduction } from '../../src/reduction/tiled';
import type { SiteView, VisualSpan } from '../../src/reduction/tokenState';

const size = { width: 1920, height: 1080 };
const layout = anyresLayout(archPreset('llava-onevision-qwen2-0.5b').anyres!, size);
const pass: ModelShape = {
  visionLayers: 26,
  textLayers: 24,
  visualTokens: 729,
  grid: { rows: 27, cols: 27 },
  hasClassToken: false,
};
const plan = (method: string) => planTiledReduction({ method, budget: { ratio: 0.11 } }, pass, { size, layout });

test('the layout this file assumes', () => {
  assert.deepEqual(
    [layout.unpadded.rows, layout.unpadded.cols, layout.grid.rows, layout.grid.cols],
    [75, 135, 60, 108],
  );
  assert.equal(layout.tokens, 7269);
});

test("steps in the tower keep the same share of every pass's tokens on the image, which come to the budget", () => {
  const tiled = plan('ficoco-v');
  const { keep, passTokens, onPacked } = tiled;
  assert.equal(keep, Math.round(0.11 * (7269 - 60)));
  assert.equal(onPacked.length, 0);
  // The base image, then 3 × 5 tiles: the top and bottom rows of tiles give 3 of their 27 patch rows to padding.
  const row = (tokens: number) => new Array<number>(5).fill(tokens);
  assert.deepEqual(passTokens, [729, ...row(24 * 27), ...row(729), ...row(24 * 27)]);
  assert.equal(
    passTokens.reduce((sum, tokens) => sum + tokens, 0),
    729 + 75 * 135,
  );
  const kept = keptPerPass(tiled);
  assert.equal(
    kept.reduce((sum, tokens) => sum + tokens, 0),
    keep,
  );
  kept.forEach((tokens, pass) => {
    const share = (keep * passTokens[pass]) / (729 + 75 * 135);
    assert.ok(Math.abs(tokens - share) < 1, `pass ${pass} keeps ${tokens} for a share of ${share.toFixed(2)}`);
  });
  assert.ok(kept[1] < kept[0], 'a tile with padding keeps fewer than a whole pass');
});

test('every tower step leaves each pass its share of what that step leaves a whole pass', () => {
  const { passTokens, perPass } = plan('ficoco-v');
  let whole = 729;
  for (const step of perPass.slice(0, -1)) {
    whole -= step.remove;
    assert.deepEqual(
      step.passLeaves,
      passTokens.map((tokens) => Math.round((tokens * whole) / 729)),
    );
  }
});

test('decoder steps alone start from the packed, shrunk image and end at the budget', () => {
  const { keep, perPass, onPacked } = plan('fastv');
  assert.equal(perPass.length, 0);
  assert.equal(keep + removedTokens(onPacked), 7269 - 60);
});

test('after steps in the tower, decoder steps start from what the passes hand over, unshrunk', () => {
  const tiled = plan('ficoco-vl');
  const { keep, perPass, onPacked } = tiled;
  assert.ok(perPass.length > 0 && onPacked.length > 0);
  // FiCoCo-VL's split: the tower keeps about √(N·B) of the N = 729 + 75 · 135 unshrunk features, the decoder the rest.
  const handed = keptPerPass(tiled).reduce((sum, tokens) => sum + tokens, 0);
  assert.equal(handed, keep + removedTokens(onPacked), 'the passes hand over what the decoder steps expect');
  const midpoint = Math.sqrt((729 + 75 * 135) * keep);
  assert.ok(Math.abs(handed - midpoint) / midpoint < 0.02, `the tower hands ${handed}, √(N·B) is ${midpoint}`);
  // Run as the engine does: every decoder step removes its planned share, and the last leaves the budget.
  let left = handed;
  for (const step of onPacked) {
    const removed = stepRemoval(step, left);
    assert.equal(removed, step.remove, `the step at ${step.site} removes what it planned`);
    left -= removed;
  }
  assert.equal(left, keep);
});

test('decoder steps leave the counts planned for them, so the image ends at its budget whatever arrives', () => {
  const { keep, onPacked } = plan('ficoco-vl');
  let planned = keep + removedTokens(onPacked);
  for (const step of onPacked) assert.equal(step.leaves, (planned -= step.remove));
  assert.equal(onPacked.at(-1)!.leaves, keep);
});

test('a budget a few tokens short of the whole image is kept exactly, by every method', () => {
  // LLaVA-NeXT does not shrink: 1,296 content tokens for a 3000 × 400 strip, 1,295 of them a budget of 99.9 %.
  const strip = { width: 3000, height: 400 };
  const nextLayout = anyresLayout(archPreset('llava-next-mistral-7b').anyres!, strip);
  const nextPass: ModelShape = {
    visionLayers: 23,
    textLayers: 32,
    visualTokens: 576,
    grid: { rows: 24, cols: 24 },
    hasClassToken: true,
  };
  for (const method of METHODS.map(({ name }) => name)) {
    const tiled = planTiledReduction({ method, budget: { ratio: 0.999 } }, nextPass, {
      size: strip,
      layout: nextLayout,
    });
    const handed =
      tiled.perPass.length > 0
        ? keptPerPass(tiled).reduce((sum, tokens) => sum + tokens, 0)
        : nextLayout.tokens - nextLayout.grid.rows;
    const kept = tiled.onPacked.reduce((left, step) => left - stepRemoval(step, left), handed);
    assert.equal(tiled.keep, 1295, method);
    assert.equal(kept, tiled.keep, method);
  }
});

test('a budget above the content tokens is refused, naming the image size, in the words the chat shows', () => {
  // The chat names no setting; the command line names its option (cli-errors.test.ts).
  assert.throws(
    () => planTiledReduction({ method: 'ficoco-v', budget: { tokens: 7210 } }, pass, { size, layout }),
    /more than the 7209 this model gives a 1920 × 1080 image, so nothing would be reduced; keep at most 7209, or turn reduction off\.$/,
  );
  assert.throws(
    () => planReduction('ficoco-v', { tokens: 730 }, pass),
    /more than the 729 this model gives an image, so nothing would be reduced; keep at most 729, or turn reduction off\.$/,
  );
});

/** A pass's view at a tower site, one span of `scores.length` tokens whose rank is `scores`. */
function passView(pass: number, scores: number[]): SiteView {
  const count = scores.length;
  return {
    hidden: Float32Array.from(scores),
    count,
    width: 1,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [
      {
        start: 0,
        count,
        grid: { rows: 1, cols: count },
        patchOwner: Int32Array.from({ length: count }, (_, i) => i),
        tokenPatch: Int32Array.from({ length: count }, (_, i) => i),
      },
    ],
    site: 'features',
    keyCount: count,
    hasClassToken: false,
    pass,
  };
}

const byHidden = (view: SiteView, span: VisualSpan) => view.hidden.subarray(span.start, span.start + span.count);

test('a ranked step keeps the best tokens of all passes together, at least one a pass', () => {
  const views = [passView(0, [0.5, 0.1, 0.1, 0.3]), passView(1, [0.05, 0.05, 0.2, 0.7]), passView(2, [0, 0, 0, 0])];
  // Planned 2 + 2 + 2: each pass keeps its best (0.5, 0.7, 0), then the best three of the rest (0.3, 0.2 and the
  // first of pass 0's two 0.1s) go to passes 0, 1, 0: 3 + 2 + 1.
  assert.deepEqual(leavesByRank({ rank: byHidden, passLeaves: [2, 2, 2] }, views), [3, 2, 1]);
  // Ties go to the earlier pass, then the earlier token.
  const tied = [passView(0, [1, 1, 1]), passView(1, [1, 1, 1])];
  assert.deepEqual(leavesByRank({ rank: byHidden, passLeaves: [1, 2] }, tied), [2, 1]);
  assert.throws(() => leavesByRank({ rank: byHidden, passLeaves: [1] }, tied), /a count for every pass/);
});

test('a ranked step reduces the passes together, each to what the ranking kept of it', () => {
  const step = planTiledReduction({ method: 'fastervlm', budget: { tokens: 4 } }, pass, { size, layout }).perPass[0];
  assert.ok(step.rank, 'FasterVLM ranks the passes together by [CLS] attention');
  const hook = stepHook({ ...step, rank: byHidden, passLeaves: [2, 2] });
  const views = [passView(0, [0.5, 0.4, 0.3]), passView(1, [0.9, 0.8, 0.7])].map((view) => ({
    ...view,
    // [CLS]-free: the mean attention a token receives, here each query's row the scores.
    attention: Float32Array.from({ length: 9 }, (_, i) => view.hidden[i % 3]),
  }));
  const reduced = hook.reducePasses!(views);
  assert.deepEqual(
    reduced.map((state) => Array.from(state.spans[0].tokenPatch)),
    [[0], [0, 1, 2]],
  );
});

test('FiCoCo-VL whose tower would hand the decoder no fewer tokens than the shrunk image leaves it all to the decoder', () => {
  // visionShare 0.1: the tower would keep N^0.9·B^0.1 ≈ 8,360 of the 10,854 unshrunk features, more than the 7,209
  // content tokens anyres_max leaves the unreduced image.
  const tiled = planTiledReduction(
    { method: 'ficoco-vl', budget: { ratio: 0.11 }, params: { visionShare: 0.1 } },
    pass,
    { size, layout },
  );
  assert.deepEqual(tiled.perPass, []);
  // FiCoCo-L's schedule, its removals scaled to start from the whole image: even over the layers, to the budget.
  const removals = tiled.onPacked.map((step) => step.remove);
  assert.equal(tiled.keep + removedTokens(tiled.onPacked), 7269 - 60);
  assert.ok(Math.max(...removals) - Math.min(...removals) <= 1, `removals ${removals.join(', ')}`);
  assert.deepEqual(
    tiled.onPacked.map((step) => step.site),
    plan('ficoco-l').onPacked.map((step) => step.site),
  );
  let left = 7269 - 60;
  for (const step of tiled.onPacked) left -= stepRemoval(step, left);
  assert.equal(left, tiled.keep);
  // A share that hands over fewer keeps its tower steps.
  const fewer = planTiledReduction(
    { method: 'ficoco-vl', budget: { ratio: 0.11 }, params: { visionShare: 0.2 } },
    pass,
    { size, layout },
  );
  assert.ok(fewer.perPass.length > 0);
  assert.ok(fewer.keep + removedTokens(fewer.onPacked) < 7269 - 60);
});

test('an explicit schedule on a tiled image: its layers reduce in its proportions, and the image ends at the budget', () => {
  const scheduled = (method: string, params: Record<string, unknown>) =>
    planTiledReduction({ method, budget: { ratio: 0.11 }, params }, pass, { size, layout });
  const inTower = scheduled('ficoco-v', { schedule: '3,2,1' });
  // OneVision's 26 tower layers reduce from 0.52 × 26 → 14: three layers, a whole pass's 676 removed as 3 : 2 : 1.
  assert.deepEqual(
    inTower.perPass.map((step) => [step.site, step.remove]),
    [
      ['vision:14', 338],
      ['vision:15', 225],
      ['vision:16', 113],
    ],
  );
  assert.equal(
    keptPerPass(inTower).reduce((sum, tokens) => sum + tokens, 0),
    inTower.keep,
  );
  // FiCoCo-VL: two tower layers, then two decoder layers that take what the passes hand over to the budget.
  const both = scheduled('ficoco-vl', { visionSchedule: '1,1', llmSchedule: '2,1' });
  assert.deepEqual(
    both.perPass.map((step) => step.site),
    ['vision:14', 'vision:15'],
  );
  assert.deepEqual(
    both.onPacked.map((step) => step.site),
    ['llm:4', 'llm:5'],
  );
  let left = keptPerPass(both).reduce((sum, tokens) => sum + tokens, 0);
  for (const step of both.onPacked) left -= stepRemoval(step, left);
  assert.equal(left, both.keep);
  // Where the tower would hand over the whole image, the decoder's removals are scaled, still 2 : 1.
  const decoderOnly = scheduled('ficoco-vl', { llmSchedule: '2,1', visionShare: 0.1 });
  assert.deepEqual(decoderOnly.perPass, []);
  assert.deepEqual(
    decoderOnly.onPacked.map((step) => step.remove),
    [4277, 2139],
  );
  assert.equal(decoderOnly.keep + removedTokens(decoderOnly.onPacked), 7269 - 60);
});

test('a tiling that leaves a tile none of the image (no released config does) is refused with the way out', () => {
  // One row of 64 tiles of 30 px, anyres_max_1: a 3200 × 100 image fills 32 of them, and its 3 feature rows shrink
  // to none.
  const spec = {
    tileSize: 30,
    featuresPerSide: 3,
    pinpoints: [[30, 30 * 64]] as [number, number][],
    baseTokens: 9,
    maxTiles: 1,
  };
  const wide = { width: 3200, height: 100 };
  const tiny = { ...pass, visualTokens: 9, grid: { rows: 3, cols: 3 } };
  assert.throws(
    () =>
      planTiledReduction({ method: 'fastv', budget: { ratio: 0.5 } }, tiny, {
        size: wide,
        layout: anyresLayout(spec, wide),
      }),
    /gives a 3200 × 100 image a tile or a grid without any of its pixels .* choose method "none"/,
  );
});
