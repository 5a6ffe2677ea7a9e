import * as ort from 'onnxruntime-node';
import { ElemType } from '../graph/builder';
import { pastName, presentName } from '../graph/segment';

/**
 * Per-layer keys and values [kvHeads, length, headDim]. Layers may hold different lengths: a layer
 * caches the tokens that entered it, and reduction inside the decoder shortens later layers.
 */
export class KvCache {
  private readonly layers = new Map<number, { keys: ort.Tensor; values: ort.Tensor }>();

  constructor(
    private readonly kvHeads: number,
    private readonly headDim: number,
    private readonly computeType: ElemType,
  ) {}

  /** Feeds for a segment's `past.l{i}.*` inputs (empty tensors before the first token). */
  feeds(layers: readonly number[]): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const layer of layers) {
      const cached = this.layers.get(layer) ?? { keys: this.empty(), values: this.empty() };
      feeds[pastName(layer, 'keys')] = cached.keys;
      feeds[pastName(layer, 'values')] = cached.values;
    }
    return feeds;
  }

  /** Takes a segment's `present.l{i}.*` outputs as the new cache of those layers. */
  update(layers: readonly number[], outputs: ort.InferenceSession.OnnxValueMapType): void {
    for (const layer of layers) {
      const previous = this.layers.get(layer);
      this.layers.set(layer, {
        keys: outputs[presentName(layer, 'keys')] as ort.Tensor,
        values: outputs[presentName(layer, 'values')] as ort.Tensor,
      });
      previous?.keys.dispose();
      previous?.values.dispose();
    }
  }

  /** Tokens cached per layer, in layer order. */
  lengths(): number[] {
    return [...this.layers.entries()].sort(([a], [b]) => a - b).map(([, entry]) => entry.keys.dims[1]);
  }

  private empty(): ort.Tensor {
    return this.computeType === ElemType.float16
      ? new ort.Tensor('float16', new Uint16Array(0), [this.kvHeads, 0, this.headDim])
      : new ort.Tensor('float32', new Float32Array(0), [this.kvHeads, 0, this.headDim]);
  }
}
