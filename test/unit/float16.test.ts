import assert from 'node:assert/strict';
import { test } from 'node:test';
import { float16ToFloat32, float32ToFloat16 } from '../../src/engine/weights/dtype';

test('float32ToFloat16 inverts float16ToFloat32 for every half value except NaN payloads', () => {
  const halves = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const back = float32ToFloat16(float16ToFloat32(halves));
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) assert.ok((back[h] & 0x7c00) === 0x7c00 && (back[h] & 0x3ff) !== 0, `NaN ${h} stays NaN`);
    else assert.equal(back[h], h, `half 0x${h.toString(16)}`);
  }
});

test('float32ToFloat16 rounds to nearest, ties to even, in normal and subnormal ranges', () => {
  const half = (x: number) => float32ToFloat16(Float32Array.of(x))[0];
  assert.equal(half(1 + 2 ** -11), 0x3c00); // tie between 1 and 1+2^-10 → even (1)
  assert.equal(half(1 + 3 * 2 ** -11), 0x3c02); // tie between 1+2^-10 and 1+2^-9 → even
  assert.equal(half(1 + 2 ** -11 + 2 ** -20), 0x3c01); // just above the tie → up
  assert.equal(half(2 ** -25), 0x0000); // half of the smallest subnormal → even (0)
  assert.equal(half(3 * 2 ** -25), 0x0002); // 1.5 units → even (2)
  assert.equal(half(2 ** -25 * 1.0001), 0x0001);
  assert.equal(half(65504), 0x7bff);
  assert.equal(half(65520), 0x7c00); // rounds past the largest finite → inf
  assert.equal(half(-1e9), 0xfc00);
  assert.equal(half(-0), 0x8000);
});
