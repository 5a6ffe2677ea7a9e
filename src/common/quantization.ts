/**
 * Quantization of the decoder's linear layers and output head (int8: the vision tower's linear layers too), by name:
 * what settings, the CLI and the protocol accept.
 */
export const WEIGHT_QUANTIZATIONS = ['none', 'int8', 'int4'] as const;
export type WeightQuantization = (typeof WEIGHT_QUANTIZATIONS)[number];

/**
 * Whether a mode quantizes the vision tower's linear layers as well as the decoder's. int8: integer GEMM runs a tower
 * pass's hundreds of rows 2-4x faster than float32 (VNNI, AMX). int4: MatMulNBits' 4-bit kernel gains less there, and
 * int4 is the mode for GPU providers, where the tower stays as stored.
 */
export const QUANTIZES_VISION_TOWER: Record<Exclude<WeightQuantization, 'none'>, boolean> = {
  int8: true,
  int4: false,
};

/** What a mode quantizes, in words: "int8 (decoder and vision tower)". */
export function quantizedParts(mode: Exclude<WeightQuantization, 'none'>): string {
  return `${mode} (decoder${QUANTIZES_VISION_TOWER[mode] ? ' and vision tower' : ''})`;
}
