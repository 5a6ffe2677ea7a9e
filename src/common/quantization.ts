/**
 * Quantization of the decoder's linear layers and output head (and, on the CPU, the vision tower's), by name:
 * what settings, the CLI and the protocol accept.
 */
export const WEIGHT_QUANTIZATIONS = ['none', 'int8', 'int4'] as const;
export type WeightQuantization = (typeof WEIGHT_QUANTIZATIONS)[number];

/**
 * What a mode quantized, in words: "int4 (decoder; vision tower in int8)". `oneForm`: the decoder is held in its
 * prompts' form alone, memory being short (WeightQuantizer's oneForm).
 */
export function quantizedParts(
  mode: Exclude<WeightQuantization, 'none'>,
  visionTower: boolean,
  oneForm = false,
): string {
  const held = oneForm ? '; one layout for prompts and answers, as memory was short: answering is slower' : '';
  if (!visionTower) return `${mode} (decoder${held})`;
  return mode === 'int8' ? `int8 (decoder and vision tower${held})` : `${mode} (decoder; vision tower in int8${held})`;
}

/** A first load's progress, in words: "Quantizing to int4 (first load only): 37 / 155 layers". */
export function quantizingProgress(mode: Exclude<WeightQuantization, 'none'>, done: number, total: number): string {
  return `Quantizing to ${mode} (first load only): ${done} / ${total} layers`;
}

/** Whether `done` of `total` layers is the first past a quarter (¼, ½, ¾, all): the lines a log or a terminal gets. */
export function passesQuarter(done: number, total: number): boolean {
  return Math.floor((4 * done) / total) > Math.floor((4 * (done - 1)) / total);
}
