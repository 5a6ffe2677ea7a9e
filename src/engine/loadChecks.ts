/**
 * What a model load checks before it builds a session: the folder's two pinpoint lists agree, its weight files share a
 * folder, and its weights fit the machine's memory (int8's second layout only with room left for a screenshot).
 */
import * as path from 'node:path';
import type { AnyresSpec, Size } from '../common/anyres';
import { formatGibibytes } from '../common/bytes';
import { FicocoError } from '../common/errors';
import type { WeightQuantization } from '../common/quantization';
import { type ModelArch, imageCost, peakRunBytes } from '../flops/model';
import { DEFAULT_MAX_NEW_TOKENS } from './askChecks';
import { PREFILL_CHUNK_TOKENS } from './promptChunks';

/**
 * transformers tiles an image by preprocessor_config.json's image_grid_pinpoints and unpads its features by
 * config.json's: a folder whose two lists hold different resolutions would get one grid's tiles packed as another's.
 * (The same resolutions in another order are let through: only ties between them could differ.)
 */
export function checkSamePinpoints(tiling: AnyresSpec, preprocessorJson: unknown, preprocessorFile: string): void {
  const listed = (preprocessorJson as { image_grid_pinpoints?: unknown }).image_grid_pinpoints;
  const resolutions = (list: unknown) => (Array.isArray(list) ? list.map((p) => JSON.stringify(p)).sort() : list);
  if (listed === undefined || JSON.stringify(resolutions(listed)) === JSON.stringify(resolutions(tiling.pinpoints)))
    return;
  throw new FicocoError(
    `${preprocessorFile}: field "image_grid_pinpoints" holds other resolutions than config.json's; the image would ` +
      `be tiled by one list and its features unpadded by the other. Use config.json's list in both files.`,
    'config',
  );
}

/** The deepest folder that holds every weight file (ORT resolves external data against it, refusing paths outside). */
export function commonFolder(files: readonly string[], modelDir: string): string {
  let folder = path.dirname(files[0]);
  while (
    !files.every(
      (file) => !path.relative(folder, file).startsWith('..') && !path.isAbsolute(path.relative(folder, file)),
    )
  ) {
    const parent = path.dirname(folder);
    if (parent === folder) {
      throw new FicocoError(
        `The weight files of ${modelDir} have no folder in common (${files.join(', ')}); put them on one drive.`,
        'weights',
      );
    }
    folder = parent;
  }
  return folder;
}

/** A 1920 × 1080 screenshot: what the product is for. */
const SCREENSHOT: Size = { width: 1920, height: 1080 };

/**
 * The memory a question about one screenshot plans for on the CPU: its attention in prompt chunks and its KV cache, with
 * a short question and a default-length answer (peakRunBytes).
 */
export function screenshotQuestionBytes(arch: ModelArch): number {
  const promptTokens = imageCost(arch, SCREENSHOT).tokens + 64;
  return peakRunBytes(
    arch,
    { promptTokens, answerTokens: DEFAULT_MAX_NEW_TOKENS, queryChunk: PREFILL_CHUNK_TOKENS },
    4,
  );
}

/**
 * Refuses, before any session is built, weights the CPU provider would hold in more memory than the machine has in all
 * (they would only swap), naming the quantizations (`bytesWith`) that fit.
 */
export function checkWeightsFit(
  held: number,
  total: number,
  quantization: WeightQuantization,
  bytesWith: (mode: Exclude<WeightQuantization, 'none'>) => number,
  fellBack?: string,
): void {
  if (held <= total) return;
  const fitting = (['int8', 'int4'] as const)
    .filter((mode) => mode !== quantization)
    .map((mode) => ({ mode, bytes: bytesWith(mode) }))
    .filter(({ bytes }) => bytes <= total);
  const how = quantization === 'none' ? 'its float weights as float32' : quantization;
  // int8's size is its decoder held once: a load with memory to spare holds it twice, for faster answers.
  const fix =
    fitting.length > 0
      ? `Quantize them — ${fitting.map(({ mode, bytes }) => `${mode} takes ${mode === 'int8' ? 'from ' : ''}about ${formatGibibytes(bytes)}`).join(', ')} ` +
        '(ficoco.quantization in VS Code, --quantize on the command line) — or run on a GPU provider.'
      : 'Choose a smaller model, or run on a GPU provider.';
  throw new FicocoError(
    (fellBack ? `${fellBack}. ` : '') +
      `This model takes about ${formatGibibytes(held)} of memory on the CPU (${how}), and this machine has ` +
      `${formatGibibytes(total)} in all. ${fix}`,
    'memory',
  );
}
