/** Element types a .safetensors header may declare that FiCoCo can place in an ONNX graph. */
export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isSafetensorsDType(value: unknown): value is SafetensorsDType {
  return typeof value === 'string' && Object.hasOwn(DTYPE_BYTES, value);
}

// 65536 entries (256 KiB), built on first use: a lookup is the fastest exact F16 → F32 conversion.
let float16Table: Uint32Array | undefined;

function buildFloat16Table(): Uint32Array {
  const table = new Uint32Array(65536);
  const asFloat = new Float32Array(1);
  const asBits = new Uint32Array(asFloat.buffer);
  for (let half = 0; half < 65536; half++) {
    const sign = (half & 0x8000) << 16;
    const exponent = (half >> 10) & 0x1f;
    const mantissa = half & 0x3ff;
    if (exponent === 0) {
      // Zero or subnormal: mantissa × 2^-24 is exact in float32.
      asFloat[0] = mantissa * 2 ** -24;
      table[half] = (sign | asBits[0]) >>> 0;
    } else if (exponent === 31) {
      // Infinity (mantissa 0) or NaN with its payload kept.
      table[half] = (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
    } else {
      table[half] = (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
    }
  }
  return table;
}

/** IEEE-754 half precision → float32, exactly (subnormals, ±0, ±Inf and NaN included). */
export function float16ToFloat32(src: Uint16Array): Float32Array {
  const table = (float16Table ??= buildFloat16Table());
  const bits = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = table[src[i]];
  return new Float32Array(bits.buffer);
}

/** bfloat16 → float32, exactly: bfloat16 is the upper half of a float32. */
export function bfloat16ToFloat32(src: Uint16Array): Float32Array {
  const bits = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return new Float32Array(bits.buffer);
}
