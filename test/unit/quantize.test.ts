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
  test('every weight comes back within half a step of its block, or clipped by at most one step', () => {
    const [rows, cols] = [5, 80]; // 80 = 2 full blocks of 32 and a padded one
    const w = weights(rows, cols);
    const q = quantizeBlocks(w, rows, cols, 32);
    assert.equal(q.blocksPerRow, 3);
    assert.equal(q.data.length, (rows * 3 * 32) / 2);
    const back = dequantizeBlocks(q);
    for (let i = 0; i < w.length; i++) {
      const scale = Math.abs(q.scales[Math.floor(i / cols) * 3 + Math.floor((i % cols) / 32)]);
      const error = Math.abs(back[i] - w[i]);
      // The block's extreme sets the scale; the far side has one step fewer (7), as in Q4_0.
      const onFarEdge = Math.abs(back[i]) >= 7 * scale - 1e-6 && Math.abs(w[i]) > 7 * scale;
      assert.ok(error <= (onFarEdge ? scale : scale / 2) + 1e-6, `weight ${i}: ${w[i]} → ${back[i]} (step ${scale})`);
    }
  });

  test('int4 packs the even element in the low nibble, around the implicit zero point 8', () => {
    // One row, one block: the extreme −8 gives a step of 1, so w = q − 8.
    const w = Float32Array.from({ length: 32 }, (_, i) => (i % 16) - 8);
    const q = quantizeBlocks(w, 1, 32, 32);
    assert.equal(q.scales[0], 1);
    assert.equal(q.data[0], 0x10); // elements 0 (low) and 1 (high): −8 and −7
    assert.equal(q.data[7], 0xfe); // elements 14 and 15: 6 and 7
    assert.deepEqual(dequantizeBlocks(q), w);
  });

  test('the extreme of a block is exact, whichever its sign; an all-zero block stays exactly zero', () => {
    const w = new Float32Array(96);
    for (let i = 0; i < 32; i++) w[i] = -(i + 1) / 32; // block 0: extreme −1
    for (let i = 32; i < 64; i++) w[i] = (i - 31) / 64; // block 1: extreme +0.5
    const q = quantizeBlocks(w, 1, 96, 32);
    assert.equal(q.scales[2], 0);
    const back = dequantizeBlocks(q);
    assert.equal(back[31], -1);
    assert.equal(back[63], 0.5);
    for (let i = 64; i < 96; i++) assert.ok(back[i] === 0, `weight ${i}: ${back[i]}`);
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
});
