import * as fs from 'node:fs';
import { readImageHeader } from '../../src/common/imageFile';
import type { ImagePixels } from '../../src/engine/engine';
import type { WeightIndex } from '../../src/engine/weights/safetensors';

/** A reference case's pixel values (`pixel_values_<i>` of reference.safetensors) with its image file's size. */
export function referencePixels(tensors: WeightIndex, index: number, imageFile: string): ImagePixels {
  const { width, height } = readImageHeader(fs.readFileSync(imageFile), imageFile);
  return { values: tensors.readFloat32(`pixel_values_${index}`), size: { width, height } };
}
