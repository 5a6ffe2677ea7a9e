import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, test } from 'node:test';
import { type AnyresLayout, type AnyresSpec, anyresLayout, bestResolution } from '../../src/common/anyres';
import { ARCH_PRESETS } from '../../src/flops/index';

// The worked examples of the research notes (anyres.md §6), from transformers' processors and models.
const NEXT = ARCH_PRESETS['llava-next-mistral-7b'].anyres!;
const ONEVISION = ARCH_PRESETS['llava-onevision-qwen2-0.5b'].anyres!;
const size = (width: number, height: number) => ({ width, height });

describe('AnyRes: tiles and visual tokens as transformers counts them', () => {
  /** A layout in one line, width × height throughout; padding top/bottom/left/right. */
  const summary = ({ best, resized, padding: p, tiles, grid, tokens }: AnyresLayout) =>
    `best ${best.width}×${best.height}, resized ${resized.width}×${resized.height}, ` +
    `padding ${p.top}/${p.bottom}/${p.left}/${p.right}, tiles ${tiles.cols}×${tiles.rows}, ` +
    `grid ${grid.cols}×${grid.rows}, ${tokens} tokens`;

  test('a 1920 × 1080 screenshot: NeXT 2 × 2 tiles, unpadded to 48 × 28 features; OneVision 5 × 3, shrunk to 108 × 60', () => {
    assert.equal(
      summary(anyresLayout(NEXT, size(1920, 1080))),
      'best 672×672, resized 672×378, padding 147/147/0/0, tiles 2×2, grid 48×28, 1948 tokens',
    );
    // OneVision: scale 1 (no resize), 135 × 75 after unpadding, √(10125 / (9 · 729)) = 1.24 > 1.1 shrinks it.
    assert.equal(
      summary(anyresLayout(ONEVISION, size(1920, 1080))),
      'best 1920×1152, resized 1920×1080, padding 36/36/0/0, tiles 5×3, grid 108×60, 7269 tokens',
    );
  });

  test('other sizes: 2560 × 1440, 1280 × 800 and 672 × 672', () => {
    const tokens = (spec: AnyresSpec, width: number, height: number) => anyresLayout(spec, size(width, height)).tokens;
    assert.deepEqual(
      [tokens(NEXT, 2560, 1440), tokens(NEXT, 1280, 800), tokens(NEXT, 672, 672)],
      [1948, 2046, 2928],
      '672 × 672 is the NeXT maximum: 576 + 48·48 + 48',
    );
    assert.deepEqual(
      [tokens(ONEVISION, 2560, 1440), tokens(ONEVISION, 1280, 800), tokens(ONEVISION, 672, 672)],
      [7317, 8032, 3699],
    );
    const notShrunk = anyresLayout(ONEVISION, size(1280, 800));
    assert.deepEqual(notShrunk.tiles, { rows: 3, cols: 4 });
    assert.deepEqual(notShrunk.grid, { rows: 67, cols: 108 }, 'ratio 1.05 is within 1.1: no downsampling');
  });

  test('an odd remainder: the extra padding pixel goes to the bottom, the extra feature row is kept', () => {
    const strip = anyresLayout(NEXT, size(1000, 300));
    assert.deepEqual(strip.best, { height: 336, width: 1008 });
    assert.deepEqual(strip.resized, { height: 303, width: 1008 });
    assert.deepEqual(strip.padding, { top: 16, bottom: 17, left: 0, right: 0 });
    // 300 · 72 / 1000 = 21.6 → 21 rows of image; (24 − 21) // 2 = 1 row cut each side leaves 22.
    assert.deepEqual(strip.grid, { rows: 22, cols: 72 });
    assert.equal(strip.tokens, 576 + 22 * 72 + 22);
  });

  test('a tall image is unpadded by columns', () => {
    const tall = anyresLayout(NEXT, size(300, 1000));
    assert.deepEqual(tall.best, { height: 1008, width: 336 });
    assert.deepEqual(tall.padding, { top: 0, bottom: 0, left: 16, right: 17 });
    assert.deepEqual(tall.grid, { rows: 72, cols: 22 });
  });

  test('best resolution: upscaling counts only up to the original; ties go to the least waste, then the first', () => {
    assert.deepEqual(bestResolution(size(336, 336), NEXT.pinpoints), { height: 336, width: 672 });
    assert.deepEqual(
      bestResolution(size(100, 100), [
        [672, 672],
        [336, 336],
      ]),
      { height: 336, width: 336 },
    );
    assert.throws(() => bestResolution(size(10, 10), []), /empty/);
  });

  test("a square 1920 × 1920 image: OneVision shrinks 135 × 135 by Python's 135 // (135 / 81) = 80, not 81", () => {
    assert.equal(
      summary(anyresLayout(ONEVISION, size(1920, 1920))),
      'best 1920×1920, resized 1920×1920, padding 0/0/0/0, tiles 5×5, grid 80×80, 7209 tokens',
    );
    // 3 × 4 tiles unpadded to 100 × 81 columns by rows: 100 // (10 / 9) = 89 where 100 / (10 / 9) rounds to 90.
    assert.deepEqual(anyresLayout(ONEVISION, size(1422, 1150)).grid, { rows: 72, cols: 89 });
  });

  test("every size in transformers' processors' counts (tools/anyres_counts.py) gets the same number of tokens", () => {
    type Family = { pinpoints: number[][]; counts: [number, number, number][] };
    const fixture = JSON.parse(fs.readFileSync('test/fixtures/anyres-token-counts.json', 'utf8')) as Record<
      'llava_next' | 'llava_onevision',
      Family
    >;
    for (const [family, spec] of [
      ['llava_next', NEXT],
      ['llava_onevision', ONEVISION],
    ] as const) {
      const { pinpoints, counts } = fixture[family];
      assert.deepEqual(spec.pinpoints, pinpoints, `${family}: the counts were made with these pinpoints`);
      assert.ok(counts.length >= 400);
      const wrong = counts.filter(
        ([width, height, tokens]) => anyresLayout(spec, size(width, height)).tokens !== tokens,
      );
      assert.deepEqual(wrong, [], `${family}: [width, height, transformers' count] that differ`);
    }
  });

  test('an image without pixels is refused', () => {
    assert.throws(() => anyresLayout(NEXT, size(0, 10)), RangeError);
  });
});
