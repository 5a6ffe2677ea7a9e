import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dequantizeBlocks, quantizeBlocks } from '../../src/engine/weights/quantize';

/** Deterministic weights in [-1, 1) with a few larger outliers, like real linear layers. */
function weights(rows: number, cols: number): Float32Array {
  let seed = 7;
  return Float32Array.from({ length: rows * cols }, (_, i) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return (seed / 2 ** 30 - 1) * (i % 97 === 0 ? 4 : 1);
  });
}

describe('block quantization in MatMulNBits layout', () => {
  for (const bits of [4, 8] as const) {
    test(`int${bits}: every weight comes back within half a step of its block, or clipped by at most one step`, () => {
      const [rows, cols] = [5, 80]; // 80 = 2 full blocks of 32 and a padded one
      const w = weights(rows, cols);
      const q = quantizeBlocks(w, rows, cols, bits, 32);
      assert.equal(q.blocksPerRow, 3);
      assert.equal(q.data.length, (rows * 3 * (32 * bits)) / 8);
      const back = dequantizeBlocks(q);
      const top = 2 ** (bits - 1) - 1; // steps on the far side of the zero point
      for (let i = 0; i < w.length; i++) {
        const scale = Math.abs(q.scales[Math.floor(i / cols) * 3 + Math.floor((i % cols) / 32)]);
        const error = Math.abs(back[i] - w[i]);
        // The block's extreme sets the scale; the far side has one step fewer (2^(b−1) − 1), as in Q4_0.
        const onFarEdge = Math.abs(back[i]) >= top * scale - 1e-6 && Math.abs(w[i]) > top * scale;
        assert.ok(error <= (onFarEdge ? scale : scale / 2) + 1e-6, `weight ${i}: ${w[i]} → ${back[i]} (step ${scale})`);
      }
    });
  }

  test('int4 packs the even element in the low nibble, around the implicit zero point 8', () => {
    // One row, one block: the extreme −8 gives a step of 1, so w = q − 8.
    const w = Float32Array.from({ length: 32 }, (_, i) => (i % 16) - 8);
    const q = quantizeBlocks(w, 1, 32, 4, 32);
    assert.equal(q.scales[0], 1);
    assert.equal(q.data[0], 0x10); // elements 0 (low) and 1 (high): −8 and −7
    assert.equal(q.data[7], 0xfe); // elements 14 and 15: 6 and 7
    assert.deepEqual(dequantizeBlocks(q), w);
  });

  test('the extreme of a block is exact, whichever its sign; an all-zero block stays exactly zero', () => {
    const w = new Float32Array(96);
    for (let i = 0; i < 32; i++) w[i] = -(i + 1) / 32; // block 0: extreme −1
    for (let i = 32; i < 64; i++) w[i] = (i - 31) / 64; // block 1: extreme +0.5
    const q = quantizeBlocks(w, 1, 96, 4, 32);
    assert.equal(q.scales[2], 0);
    const back = dequantizeBlocks(q);
    assert.equal(back[31], -1);
    assert.equal(back[63], 0.5);
    for (let i = 64; i < 96; i++) assert.ok(back[i] === 0, `weight ${i}: ${back[i]}`);
  });
});
