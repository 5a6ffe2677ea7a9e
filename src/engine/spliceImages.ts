import { FicocoError } from '../common/errors';
import type { TokenState } from '../reduction/tokenState';
import type { PackedImage } from './models/tiledFeatures';

/** Replaces each image placeholder in the embedded prompt by that image's feature rows; notes its row ends. */
export function spliceImages(
  text: TokenState,
  ids: readonly number[],
  imageTokenId: number,
  packed: readonly PackedImage[],
): { state: TokenState; structure: Uint8Array } {
  const images = packed.map((image) => image.state);
  const placeholders = ids.flatMap((id, i) => (id === imageTokenId ? [i] : []));
  if (placeholders.length !== images.length) {
    throw new FicocoError(
      `The prompt has ${placeholders.length} image placeholder(s) but ${images.length} image(s) were given.`,
      'input',
    );
  }
  const { width } = text;
  const count = text.count - images.length + images.reduce((sum, image) => sum + image.count, 0);
  const hidden = new Float32Array(count * width);
  const sizes = new Float32Array(count);
  const spans: TokenState['spans'] = [];
  const structure = new Uint8Array(count);
  let out = 0;
  let nextImage = 0;
  for (let i = 0; i < text.count; i++) {
    if (nextImage < images.length && i === placeholders[nextImage]) {
      structure.set(packed[nextImage].rowEnds, out);
      const image = images[nextImage++];
      hidden.set(image.hidden, out * width);
      sizes.set(image.sizes, out);
      const span = image.spans[0];
      spans.push({
        ...span,
        start: out + span.start,
        patchOwner: span.patchOwner.map((owner) => (owner < 0 ? -1 : owner + out)),
      });
      out += image.count;
    } else {
      hidden.set(text.hidden.subarray(i * width, (i + 1) * width), out * width);
      sizes[out] = 1;
      out++;
    }
  }
  const positions = Int32Array.from({ length: count }, (_, i) => i);
  return { state: { hidden, count, width, sizes, positions, spans }, structure };
}
