/** Quantization of the decoder's linear layers and output head, by name: what settings, the CLI and the protocol accept. */
export const WEIGHT_QUANTIZATIONS = ['none', 'int8', 'int4'] as const;
export type WeightQuantization = (typeof WEIGHT_QUANTIZATIONS)[number];
