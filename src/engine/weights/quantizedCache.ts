/**
 * Linear layers quantized at load time and cached on disk beside the weights they come from
 * (`ficoco-int4-b64-<fingerprint>.quantized`, `ficoco-int8-channels-<fingerprint>.quantized`, safetensors files): the
 * first load writes it, later loads map it. The fingerprint covers the source tensors and their files, so a changed
 * checkpoint is requantized.
 *
 * Weights in a Hugging Face cache are the exception: its blobs/ folder holds only what the Hub served, and
 * huggingface_hub manages it. Their cache goes into a folder of FiCoCo's own (`<cacheDir>/<hash of blobs/>/`).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FicocoError } from '../../common/errors';
import { QUANTIZES_VISION_TOWER, type WeightQuantization } from '../../common/quantization';
import { DTYPE_BYTES } from './dtype';
import { INT4_BLOCK_SIZE, blockLayout, quantizeBlocks, quantizeChannels } from './quantize';
import { TensorLocation, WeightIndex } from './safetensors';
import { safetensorsPrefix } from './safetensorsWriter';

/** Bumped when the file's layout changes, so old caches are rebuilt. */
const FORMAT_VERSION = 3;

/** Where caches of weights in a Hugging Face cache go when the caller names no folder. */
export const DEFAULT_QUANTIZED_CACHE_DIR = path.join(os.homedir(), '.cache', 'ficoco-vision', 'quantized');

/** One quantized linear layer, once the cache exists. */
export type QuantizedLinear =
  | {
      /** int4: MatMulNBits' inputs */
      kind: 'blocks';
      blockSize: number;
      inFeatures: number;
      outFeatures: number;
      /** U8 [out, blocks, blockSize/2] */
      data: TensorLocation;
      /** F32 [out · blocks] */
      scales: TensorLocation;
    }
  | {
      /** int8: MatMulInteger's B, the scale of each of its columns and the sum of each column's weights */
      kind: 'channels';
      /** I8 [in, out] */
      data: TensorLocation;
      /** F32 [out] */
      scales: TensorLocation;
      /** F32 [out] */
      sums: TensorLocation;
    };

/** How each mode stores a weight [rows = out, cols = in]: its tag in the file name, its tensors and their bytes. */
interface CacheLayout {
  tag: string;
  /** name suffix → dtype and shape, in the order they are written */
  tensors(rows: number, cols: number): Record<string, { dtype: 'U8' | 'I8' | 'F32'; shape: number[] }>;
  /** the bytes of each tensor, by suffix */
  encode(weights: Float32Array, rows: number, cols: number): Record<string, Uint8Array | Int8Array | Float32Array>;
  describe(rows: number, cols: number, stored: (suffix: string) => TensorLocation): QuantizedLinear;
}

const LAYOUTS: Record<Exclude<WeightQuantization, 'none'>, CacheLayout> = {
  int4: {
    tag: `b${INT4_BLOCK_SIZE}`,
    tensors(rows, cols) {
      const { blocksPerRow, blobBytes } = blockLayout(cols);
      return {
        q: { dtype: 'U8', shape: [rows, blocksPerRow, blobBytes] },
        scales: { dtype: 'F32', shape: [rows * blocksPerRow] },
      };
    },
    encode(weights, rows, cols) {
      const { data, scales } = quantizeBlocks(weights, rows, cols);
      return { q: data, scales };
    },
    describe: (rows, cols, stored) => ({
      kind: 'blocks',
      blockSize: INT4_BLOCK_SIZE,
      inFeatures: cols,
      outFeatures: rows,
      data: stored('q'),
      scales: stored('scales'),
    }),
  },
  int8: {
    tag: 'channels',
    tensors: (rows, cols) => ({
      q: { dtype: 'I8', shape: [cols, rows] },
      scales: { dtype: 'F32', shape: [rows] },
      sums: { dtype: 'F32', shape: [rows] },
    }),
    encode(weights, rows, cols) {
      const { data, scales, sums } = quantizeChannels(weights, rows, cols);
      return { q: data, scales, sums };
    },
    describe: (_rows, _cols, stored) => ({
      kind: 'channels',
      data: stored('q'),
      scales: stored('scales'),
      sums: stored('sums'),
    }),
  },
};

export class WeightQuantizer {
  private readonly requested: TensorLocation[] = [];
  private readonly ready = new Map<string, QuantizedLinear>();

  constructor(
    private readonly index: WeightIndex,
    readonly mode: Exclude<WeightQuantization, 'none'>,
    /** for weights in a Hugging Face cache: the folder of FiCoCo's own that takes their quantized cache */
    private readonly cacheDir = DEFAULT_QUANTIZED_CACHE_DIR,
  ) {}

  private get layout(): CacheLayout {
    return LAYOUTS[this.mode];
  }

  /** Whether this mode quantizes the vision tower's linear layers as well as the decoder's. */
  get quantizesVisionTower(): boolean {
    return QUANTIZES_VISION_TOWER[this.mode];
  }

  /** Asks for `weight` [out, in] to be quantized; the answer is readable after `materialize()`. */
  request(weight: TensorLocation): () => QuantizedLinear {
    this.requested.push(weight);
    return () => {
      const quantized = this.ready.get(weight.name);
      if (!quantized) throw new Error(`${weight.name} was requested for quantization but the cache was not built`);
      return quantized;
    };
  }

  /** Opens the cache file of what was requested, writing it first when it does not exist; returns its path. */
  async materialize(onTensor?: (done: number, total: number) => void): Promise<string> {
    const source = path.dirname(this.index.files[0]);
    const folder = isHfCacheBlobs(source)
      ? path.join(this.cacheDir, createHash('sha256').update(source).digest('hex').slice(0, 16))
      : source;
    const file = path.join(folder, `ficoco-${this.mode}-${this.layout.tag}-${this.fingerprint()}.quantized`);
    if (!fs.existsSync(file)) {
      fs.mkdirSync(folder, { recursive: true });
      // Whatever layout an older cache of this mode used, it is stale now.
      removeStale(folder, `ficoco-${this.mode}-`);
      await this.write(file, onTensor);
    }
    const cache = WeightIndex.openFile(file);
    for (const weight of this.requested) {
      const [rows, cols] = weight.shape;
      this.ready.set(
        weight.name,
        this.layout.describe(rows, cols, (suffix) => cache.get(`${weight.name}.${suffix}`)),
      );
    }
    return file;
  }

  private fingerprint(): string {
    const hash = createHash('sha256').update(`${FORMAT_VERSION}:${this.mode}:${this.layout.tag}`);
    const files = new Map<string, fs.Stats>();
    for (const weight of this.requested) {
      if (!files.has(weight.file)) files.set(weight.file, fs.statSync(weight.file));
      const stats = files.get(weight.file)!;
      hash.update(
        JSON.stringify([
          weight.name,
          weight.dtype,
          weight.shape,
          path.basename(weight.file),
          weight.byteOffset,
          stats.size,
          stats.mtimeMs,
        ]),
      );
    }
    return hash.digest('hex').slice(0, 16);
  }

  /** Streams the quantized tensors into `file` (.partial first, renamed when complete). */
  private async write(file: string, onTensor?: (done: number, total: number) => void): Promise<void> {
    const header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> = {};
    let offset = 0;
    for (const weight of this.requested) {
      const [rows, cols] = weight.shape;
      for (const [suffix, { dtype, shape }] of Object.entries(this.layout.tensors(rows, cols))) {
        const bytes = shape.reduce((product, dim) => product * dim, DTYPE_BYTES[dtype]);
        header[`${weight.name}.${suffix}`] = { dtype, shape, data_offsets: [offset, offset + bytes] };
        offset += bytes;
      }
    }
    const partial = `${file}.partial`;
    let fd: number;
    try {
      fd = fs.openSync(partial, 'w');
    } catch (error) {
      throw new FicocoError(
        `The ${this.mode} weights cannot be cached beside the model's weights in ${path.dirname(file)} ` +
          `(${(error as NodeJS.ErrnoException).code ?? String(error)}); copy the model to a writable folder or ` +
          `turn weight quantization off.`,
        'weights',
      );
    }
    try {
      fs.writeSync(fd, safetensorsPrefix(header));
      for (const [done, weight] of this.requested.entries()) {
        const [rows, cols] = weight.shape;
        const encoded = this.layout.encode(this.index.readFloat32(weight.name), rows, cols);
        for (const suffix of Object.keys(this.layout.tensors(rows, cols))) fs.writeSync(fd, encoded[suffix]);
        onTensor?.(done + 1, this.requested.length);
        // Let the host answer pings between tensors: a 7B model takes a while.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(partial, file);
  }
}

/** huggingface_hub's `models--owner--name/blobs/`, where snapshot links point. */
function isHfCacheBlobs(folder: string): boolean {
  return path.basename(folder) === 'blobs' && path.basename(path.dirname(folder)).startsWith('models--');
}

function removeStale(folder: string, prefix: string): void {
  for (const name of fs.readdirSync(folder)) {
    if (name.startsWith(prefix) && (name.endsWith('.quantized') || name.endsWith('.quantized.partial')))
      fs.rmSync(path.join(folder, name), { force: true });
  }
}
