import * as ort from 'onnxruntime-node';
import { ElemType, lowestFloat } from '../graph/builder';
import { float32ToFloat16 } from '../weights/dtype';
import { pastName, presentName } from '../graph/segment';

/**
 * Slots are added this many at a time. A run's new rows go into spare slots, so a decode step moves one row per
 * layer instead of the whole cache out of ONNX Runtime and back (at 2,048 tokens that copy cost more than the step).
 */
export const SLOT_BLOCK = 256;

type Rows = Float32Array | Uint16Array;

interface LayerCache {
  /** [kvHeads, slots, headDim]; slots from `length` on are spare */
  keys: Rows;
  values: Rows;
  slots: number;
  length: number;
}

/**
 * Per-layer keys and values. Layers may hold different lengths: a layer caches the tokens that entered it, and
 * reduction inside the decoder shortens later layers.
 */
export class KvCache {
  private readonly layers = new Map<number, LayerCache>();

  /** a spare slot's mask value as stored: the lowest float (float16's as its bits) */
  private readonly spareSlot: number;

  constructor(
    private readonly kvHeads: number,
    private readonly headDim: number,
    private readonly computeType: ElemType,
  ) {
    const lowest = Float32Array.of(lowestFloat(computeType));
    this.spareSlot = computeType === ElemType.float16 ? float32ToFloat16(lowest)[0] : lowest[0];
  }

  /** Feeds for a segment's `past.l{i}.*` inputs, for a run of `tokens` new tokens. */
  feeds(layers: readonly number[], tokens: number): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const layer of layers) {
      const cache = this.layers.get(layer) ?? this.allocate(0);
      const dims = [this.kvHeads, cache.slots, this.headDim];
      feeds[pastName(layer, 'keys')] = this.tensor(cache.keys, dims);
      feeds[pastName(layer, 'values')] = this.tensor(cache.values, dims);
      feeds[pastName(layer, 'mask')] = this.tensor(this.mask(cache, tokens), [cache.slots + tokens]);
    }
    return feeds;
  }

  /** Appends a segment's `present.l{i}.*` outputs (the run's new rows) to those layers. */
  update(layers: readonly number[], outputs: ort.InferenceSession.OnnxValueMapType): void {
    for (const layer of layers) {
      const keys = outputs[presentName(layer, 'keys')] as ort.Tensor;
      const values = outputs[presentName(layer, 'values')] as ort.Tensor;
      const tokens = keys.dims[1];
      const cache = this.reserve(layer, tokens);
      const rowsPerHead = tokens * this.headDim;
      for (let head = 0; head < this.kvHeads; head++) {
        const at = (head * cache.slots + cache.length) * this.headDim;
        const from = head * rowsPerHead;
        cache.keys.set((keys.data as Rows).subarray(from, from + rowsPerHead), at);
        cache.values.set((values.data as Rows).subarray(from, from + rowsPerHead), at);
      }
      cache.length += tokens;
      keys.dispose();
      values.dispose();
    }
  }

  /** Tokens cached per layer, in layer order. */
  lengths(): number[] {
    return [...this.layers.entries()].sort(([a], [b]) => a - b).map(([, cache]) => cache.length);
  }

  /** The layer's cache with room for `tokens` more, grown by whole blocks of slots (its rows copied over). */
  private reserve(layer: number, tokens: number): LayerCache {
    const cache = this.layers.get(layer) ?? this.allocate(0);
    this.layers.set(layer, cache);
    if (cache.length + tokens <= cache.slots) return cache;
    const grown = this.allocate(Math.ceil((cache.length + tokens) / SLOT_BLOCK) * SLOT_BLOCK);
    const rows = cache.length * this.headDim;
    for (let head = 0; head < this.kvHeads; head++) {
      const from = head * cache.slots * this.headDim;
      grown.keys.set(cache.keys.subarray(from, from + rows), head * grown.slots * this.headDim);
      grown.values.set(cache.values.subarray(from, from + rows), head * grown.slots * this.headDim);
    }
    grown.length = cache.length;
    this.layers.set(layer, grown);
    return grown;
  }

  private allocate(slots: number): LayerCache {
    const size = this.kvHeads * slots * this.headDim;
    return { keys: this.rows(size), values: this.rows(size), slots, length: 0 };
  }

  /** 0 for the slots in use and this run's tokens, the lowest float for the spare slots (attention skips them). */
  private mask(cache: LayerCache, tokens: number): Rows {
    const mask = this.rows(cache.slots + tokens);
    mask.fill(this.spareSlot, cache.length, cache.slots);
    return mask;
  }

  private rows(length: number): Rows {
    return this.computeType === ElemType.float16 ? new Uint16Array(length) : new Float32Array(length);
  }

  private tensor(data: Rows, dims: number[]): ort.Tensor {
    return data instanceof Uint16Array ? new ort.Tensor('float16', data, dims) : new ort.Tensor('float32', data, dims);
  }
}
