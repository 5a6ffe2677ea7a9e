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

/** float32 → IEEE half with round-to-nearest-even; overflow becomes ±inf. */
export function float32ToFloat16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const exponent = (x >>> 23) & 0xff;
    const mantissa = x & 0x7fffff;
    if (exponent === 0xff) {
      out[i] = sign | 0x7c00 | (mantissa ? 0x200 : 0);
      continue;
    }
    const halfExponent = exponent - 127 + 15;
    if (halfExponent >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (halfExponent <= 0) {
      // Subnormal half: count in units of 2^-24, rounding to even; below half of one unit is ±0.
      if (halfExponent < -10) {
        out[i] = sign;
        continue;
      }
      const significand = mantissa | 0x800000;
      const shift = 14 - halfExponent;
      const kept = significand >>> shift;
      const remainder = significand & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      const roundUp = remainder > halfway || (remainder === halfway && (kept & 1) === 1) ? 1 : 0;
      out[i] = sign | (kept + roundUp);
    } else {
      const halfMantissa = mantissa >>> 13;
      const remainder = mantissa & 0x1fff;
      const roundUp = remainder > 0x1000 || (remainder === 0x1000 && (halfMantissa & 1) === 1) ? 1 : 0;
      // A carry out of the mantissa correctly bumps the exponent (and overflows to inf).
      out[i] = sign | ((halfExponent << 10) + halfMantissa + roundUp);
    }
  }
  return out;
}
