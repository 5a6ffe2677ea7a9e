/**
 * Quantization of the decoder's linear layers and output head (and, in int8, the vision tower's), by name:
 * what settings, the CLI and the protocol accept.
 */
export const WEIGHT_QUANTIZATIONS = ['none', 'int8', 'int4'] as const;
export type WeightQuantization = (typeof WEIGHT_QUANTIZATIONS)[number];

/**
 * Whether a mode quantizes the vision tower's linear layers as well as the decoder's. A tower pass multiplies hundreds
 * of rows, where the CPU's integer GEMM runs 2-4x faster than float32 (VNNI, AMX): on the CPU both modes take the tower
 * in 8-bit integer products. int4 is also the mode for GPU providers, where ONNX Runtime's integer products are not
 * the path to take, so there it leaves the tower as stored.
 */
export function quantizesVisionTower(mode: Exclude<WeightQuantization, 'none'>, onCpu: boolean): boolean {
  return mode === 'int8' || onCpu;
}

/** What a mode quantized, in words: "int4 (decoder; vision tower in int8)". */
export function quantizedParts(mode: Exclude<WeightQuantization, 'none'>, visionTower: boolean): string {
  if (!visionTower) return `${mode} (decoder)`;
  return mode === 'int8' ? 'int8 (decoder and vision tower)' : `${mode} (decoder; vision tower in int8)`;
}
