import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { quantizedParts } from '../../src/common/quantization';
import {
  channelsAsBlocks,
  dequantizeBlocks,
  dequantizeChannels,
  quantizeBlocks,
  quantizeChannels,
} from '../../src/engine/weights/quantize';

/** Deterministic weights in [-1, 1) with a few larger outliers, like real linear layers. */
function weights(rows: number, cols: number): Float32Array {
  let seed = 7;
  return Float32Array.from({ length: rows * cols }, (_, i) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return (seed / 2 ** 30 - 1) * (i % 97 === 0 ? 4 : 1);
  });
}

describe('int4 block quantization in MatMulNBits layout', () => {
  /** Block b of row r's zero point, unpacked from MatMulNBits' layout. */
  const zeroPoint = (q: ReturnType<typeof quantizeBlocks>, row: number, block: number) =>
    (q.zeroPoints![row * Math.ceil(q.blocksPerRow / 2) + (block >> 1)] >> ((block & 1) * 4)) & 0x0f;

  test('every weight comes back within half a step of its block, unless it lay past the end of the codes', () => {
    const [rows, cols] = [5, 80]; // 80 = 2 full blocks of 32 and a padded one
    const w = weights(rows, cols);
    const q = quantizeBlocks(w, rows, cols, 32);
    assert.equal(q.blocksPerRow, 3);
    assert.equal(q.data.length, (rows * 3 * 32) / 2);
    assert.equal(q.zeroPoints!.length, rows * 2);
    const back = dequantizeBlocks(q);
    let clipped = 0;
    for (let i = 0; i < w.length; i++) {
      const [row, block] = [Math.floor(i / cols), Math.floor((i % cols) / 32)];
      const scale = q.scales[row * 3 + block];
      const zero = zeroPoint(q, row, block);
      // The codes' ends, −z·s and (15 − z)·s, as float32 like the dequantized weights.
      const [first, last] = [Math.fround(-zero * scale), Math.fround((15 - zero) * scale)];
      if (w[i] < first - scale / 2 || w[i] > last + scale / 2) {
        clipped++;
        assert.ok(
          back[i] === (w[i] < 0 ? first : last),
          `weight ${i}: ${w[i]} → ${back[i]}, codes span ${first}…${last}`,
        );
      } else
        assert.ok(Math.abs(back[i] - w[i]) <= scale / 2 + 1e-6, `weight ${i}: ${w[i]} → ${back[i]} (step ${scale})`);
    }
    // The search gives up few weights: the outliers (every 97th, 4× the rest) and a block's extremes at most.
    assert.ok(clipped > 0 && clipped <= w.length / 40, `${clipped} of ${w.length} weights clipped`);
  });

  test('the step search clips a lone outlier when that rounds the rest of its block finer', () => {
    const cols = 32;
    const w = Float32Array.from({ length: cols }, (_, i) => Math.sin(i * 1.7) * 0.3);
    w[5] = 1.3;
    const back = dequantizeBlocks(quantizeBlocks(w, 1, cols, cols));
    // The same block at its full range: lo = min(w, 0), hi = max(w, 0), z = round(15·(−lo)/(hi − lo)).
    const [lo, hi] = [Math.min(0, ...w), Math.max(0, ...w)];
    const [step, zero] = [Math.fround((hi - lo) / 15), Math.round((15 * -lo) / (hi - lo))];
    const fullRange = w.map((v) => (Math.min(15, Math.max(0, Math.round(v / step) + zero)) - zero) * step);
    const squaredError = (values: Float32Array) => values.reduce((sum, v, i) => sum + (v - w[i]) ** 2, 0);
    assert.ok(back[5] < w[5], 'the outlier is clipped');
    assert.ok(squaredError(back) < squaredError(fullRange), `${squaredError(back)} ≥ ${squaredError(fullRange)}`);
  });

  test('int4 packs the even element and the even block in the low nibble; exact grids come back exactly', () => {
    // Block 0 spans −8…7 (zero point 8, step 1); block 1 spans −3…12 (zero point 3, step 1).
    const w = Float32Array.from({ length: 64 }, (_, i) => (i < 32 ? (i % 16) - 8 : (i % 16) - 3));
    const q = quantizeBlocks(w, 1, 64, 32);
    assert.deepEqual(Array.from(q.scales), [1, 1]);
    assert.equal(q.zeroPoints![0], 0x38);
    assert.equal(q.data[0], 0x10); // elements 0 (low) and 1 (high): −8 and −7
    assert.equal(q.data[7], 0xfe); // elements 14 and 15: 6 and 7
    assert.deepEqual(dequantizeBlocks(q), w);
  });

  test('a block of one sign uses all 16 codes; an all-zero block and the padding stay exactly zero', () => {
    const w = new Float32Array(96);
    for (let i = 0; i < 32; i++) w[i] = (i % 16) / 4; // block 0: 0…3.75, step 0.25
    for (let i = 32; i < 64; i++) w[i] = 0 - (i % 16) / 2; // block 1: −7.5…0 (0 − 0 is +0), step 0.5
    const q = quantizeBlocks(w, 1, 90, 32); // the last block: 26 zeros and 6 of padding
    assert.deepEqual([zeroPoint(q, 0, 0), zeroPoint(q, 0, 1), q.scales[2]], [0, 15, 0]);
    assert.deepEqual(dequantizeBlocks(q), w.subarray(0, 90));
  });
});

describe('int8 quantization per output channel, transposed for MatMulInteger', () => {
  test("every weight comes back within half a step of its channel, and each channel's extreme is exact", () => {
    const [rows, cols] = [5, 80];
    const w = weights(rows, cols);
    const q = quantizeChannels(w, rows, cols);
    const back = dequantizeChannels(q);
    for (let row = 0; row < rows; row++) {
      const extreme = Math.max(...w.subarray(row * cols, (row + 1) * cols).map(Math.abs));
      assert.equal(q.scales[row], Math.fround(extreme / 127));
      for (let col = 0; col < cols; col++) {
        const i = row * cols + col;
        assert.ok(Math.abs(back[i] - w[i]) <= q.scales[row] / 2 + 1e-7, `weight ${i}: ${w[i]} → ${back[i]}`);
        if (Math.abs(w[i]) === extreme) assert.equal(Math.abs(q.data[col * rows + row]), 127);
      }
    }
  });

  test('the codes are stored [in, out], and an all-zero channel stays exactly zero', () => {
    // Row 0 = [1, −0.5, 0.25], row 1 all zero: B = Wᵀ holds row 0 down its first column.
    const q = quantizeChannels(Float32Array.of(1, -0.5, 0.25, 0, 0, 0), 2, 3);
    assert.deepEqual(Array.from(q.data), [127, 0, -64, 0, 32, 0]);
    assert.equal(q.scales[1], 0);
    assert.deepEqual(Array.from(dequantizeChannels(q).subarray(3)), [0, 0, 0]);
  });

  test('a channel of subnormal weights keeps its codes within ±127 and its signs', () => {
    // max|w|/127 is 1.96e-45 here, which float32 rounds down to its least step, 1.4e-45: w/s comes to 178.
    const w = Float32Array.of(2.5e-43, -1.2e-43, 0);
    const q = quantizeChannels(w, 1, 3);
    assert.equal(q.scales[0], 2 ** -149);
    assert.deepEqual(Array.from(q.data), [127, -86, 0]);
    const back = dequantizeChannels(q);
    assert.ok(back[0] > 0 && back[1] < 0, `${w} → ${back}`);
  });

  test("in MatMulNBits' 8-bit layout (one-row products) the codes stand for exactly the same weights", () => {
    const [rows, cols] = [5, 200]; // one full block of 128 and a padded one
    const q = quantizeChannels(weights(rows, cols), rows, cols);
    const blocks = channelsAsBlocks(q);
    assert.equal(blocks.bits, 8);
    assert.equal(blocks.blocksPerRow, 2);
    assert.equal(blocks.data.length, rows * 2 * 128);
    assert.deepEqual(Array.from(dequantizeBlocks(blocks)), Array.from(dequantizeChannels(q)));
    // Row 1's code for input 3 plus the zero point 128; the padded tail of each row holds the zero point.
    assert.equal(blocks.data[256 + 3], q.data[3 * rows + 1] + 128);
    assert.ok(blocks.data.subarray(cols, 256).every((code) => code === 128));
  });
});

describe('which towers a mode quantized, in words', () => {
  test('the vision tower is named, in int8 with either mode', () => {
    assert.equal(quantizedParts('int4', true), 'int4 (decoder; vision tower in int8)');
    assert.equal(quantizedParts('int4', false), 'int4 (decoder)');
    assert.equal(quantizedParts('int8', true), 'int8 (decoder and vision tower)');
  });

  test('a decoder held in one layout, memory being short, says so and what it costs', () => {
    assert.equal(
      quantizedParts('int8', true, true),
      'int8 (decoder and vision tower; one layout for prompts and answers, as memory was short: answering is slower)',
    );
  });
});
