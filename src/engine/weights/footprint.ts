import type { WeightQuantizer } from './quantizedCache';
import type { TensorLocation, WeightIndex } from './safetensors';

/** Float dtypes, which the CPU provider holds as float32 (it widens float16 and bfloat16 initializers). */
const FLOAT_DTYPES = new Set(['F16', 'BF16', 'F32', 'F64']);

const cpuBytes = ({ dtype, shape, byteLength }: TensorLocation) =>
  FLOAT_DTYPES.has(dtype) ? 4 * shape.reduce((product, dim) => product * dim, 1) : byteLength;

/**
 * About the bytes the CPU provider holds for a model's weights: float tensors as float32, quantized layers in their
 * forms instead. An estimate: tensors no graph reads count too, and a float table two sessions read (an unquantized
 * tied head) once; a quantized tied head leaves the table in float for the embedding.
 */
export function cpuWeightBytes(index: WeightIndex, quantizer?: WeightQuantizer): number {
  let bytes = index.names().reduce((sum, name) => sum + cpuBytes(index.get(name)), 0);
  if (quantizer) {
    const quantized = quantizer.footprint();
    bytes += quantized.bytes - quantized.replaces.reduce((sum, weight) => sum + cpuBytes(weight), 0);
  }
  return bytes;
}
