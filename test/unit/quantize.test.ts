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
    test(`int${bits}: every weight comes back within half a step of its block`, () => {
      const [rows, cols] = [5, 80]; // 80 = 2 full blocks of 32 and a padded one
      const w = weights(rows, cols);
      const q = quantizeBlocks(w, rows, cols, bits, 32);
      assert.equal(q.blocksPerRow, 3);
      assert.equal(q.data.length, (rows * 3 * (32 * bits)) / 8);
      assert.equal(q.zeroPoints.length, rows * Math.ceil((3 * bits) / 8));
      const back = dequantizeBlocks(q);
      for (let i = 0; i < w.length; i++) {
        const scale = q.scales[Math.floor(i / cols) * 3 + Math.floor((i % cols) / 32)];
        assert.ok(Math.abs(back[i] - w[i]) <= scale / 2 + 1e-6, `weight ${i}: ${w[i]} → ${back[i]} (step ${scale})`);
      }
    });
  }

  test('int4 packs the even element in the low nibble, and zero points the same way', () => {
    // One row, one block: values 0..15 times a step of 1 (min 0, so zero point 0).
    const w = Float32Array.from({ length: 32 }, (_, i) => i % 16);
    const q = quantizeBlocks(w, 1, 32, 4, 32);
    assert.equal(q.scales[0], 1);
    assert.equal(q.zeroPoints[0] & 0x0f, 0);
    assert.equal(q.data[0], 0x10); // elements 0 (low) and 1 (high)
    assert.equal(q.data[7], 0xfe); // elements 14 and 15
  });

  test('a negative block gets its zero point at the top; an all-zero block stays exactly zero', () => {
    const w = new Float32Array(64);
    for (let i = 0; i < 32; i++) w[i] = -(i + 1) / 32; // block 0: all negative
    const q = quantizeBlocks(w, 1, 64, 4, 32);
    assert.equal(q.zeroPoints[0] & 0x0f, 15);
    assert.equal(q.scales[1], 0);
    const back = dequantizeBlocks(q);
    for (let i = 32; i < 64; i++) assert.equal(back[i], 0);
    assert.ok(Math.abs(back[31] - -1) < 1e-6, 'the block minimum is represented exactly');
  });
});
