export {
  bytesOf,
  writeRawSafetensors,
  writeSafetensors,
  type TensorToWrite,
} from '../../src/engine/weights/safetensorsWriter';

/** float32 → bfloat16 with round-to-nearest-even, as torch does. */
export function float32ToBfloat16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  return Uint16Array.from(bits, (bit) => {
    if ((bit & 0x7fffffff) > 0x7f800000) return (bit >>> 16) | 0x40; // keep NaN a (quiet) NaN
    return (bit + 0x7fff + ((bit >>> 16) & 1)) >>> 16;
  });
}
