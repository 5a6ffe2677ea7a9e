/**
 * Linear layers quantized at load time and cached on disk beside the weights they come from
 * (`ficoco-int4-b128-zp-<fingerprint>.quantized`, `ficoco-int8-channels-<fingerprint>.quantized`, safetensors files): the
 * first load writes it, later loads map it. The fingerprint covers the source tensors and their files, so a changed
 * checkpoint is requantized.
 *
 * Weights in a Hugging Face cache are the exception: its blobs/ folder holds only what the Hub served, and
 * huggingface_hub manages it. Their cache goes into a folder of FiCoCo's own (`<cacheDir>/<hash of blobs/>/`), as does
 * the cache of weights in a folder FiCoCo cannot write.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { removeFailedWrite } from '../../common/atomicFile';
import { FicocoError } from '../../common/errors';
import type { WeightQuantization } from '../../common/quantization';
import { DTYPE_BYTES } from './dtype';
import {
  ChannelQuantized,
  INT4_BLOCK_SIZE,
  INT8_BLOCK_SIZE,
  blockLayout,
  channelsAsBlocks,
  quantizeBlocks,
  quantizeChannels,
} from './quantize';
import { TensorLocation, WeightIndex } from './safetensors';
import { safetensorsPrefix } from './safetensorsWriter';
import { CacheWriteError, defaultWorkerCount, encodeLayers } from './quantizeWorkers';
import { processAlive } from '../../common/processes';

/** Bumped when the file's layout changes, so old caches are rebuilt. */
const FORMAT_VERSION = 5;

/** Where caches of weights in a Hugging Face cache go when the caller names no folder. */
export const DEFAULT_QUANTIZED_CACHE_DIR = path.join(os.homedir(), '.cache', 'ficoco-vision', 'quantized');

/**
 * How many rows (tokens) a linear layer multiplies at once: a vision pass's hundreds; a decoder's prompt chunks and
 * its one-token steps; the head's last position. A mode keeps each layer in the forms its count runs fastest in.
 */
export type ProductRows = 'many' | 'any' | 'one';

/** MatMulNBits' inputs for one layer; each tensor is where it is stored or, in a graph being built, its value. */
export interface QuantizedBlocks<Tensor = TensorLocation> {
  bits: 4 | 8;
  blockSize: number;
  inFeatures: number;
  outFeatures: number;
  /** U8 [out, blocks, blockSize·bits/8] */
  data: Tensor;
  /** F32 [out · blocks] */
  scales: Tensor;
  /** 4 bits: U8 [out · ⌈blocks/2⌉]; none: MatMulNBits' default 2^(bits−1) */
  zeroPoints?: Tensor;
}

/** MatMulInteger's B for one layer, the scale of each of its columns and the sum of each column's weights. */
export interface QuantizedChannels<Tensor = TensorLocation> {
  /** I8 [in, out] */
  data: Tensor;
  /** F32 [out] */
  scales: Tensor;
  /** F32 [out] */
  sums: Tensor;
}

/**
 * One quantized linear layer, once the cache exists: in channels for many rows (a vision tower on the CPU, either
 * mode), in blocks for the decoder with int4, and with int8 in 8-bit blocks for one row, both for a decoder layer on the
 * CPU (the same weights either way), blocks alone on a GPU provider.
 */
export type QuantizedLinear<Tensor = TensorLocation> =
  | { blocks: QuantizedBlocks<Tensor>; channels?: QuantizedChannels<Tensor> }
  | { blocks?: undefined; channels: QuantizedChannels<Tensor> };

type StoredDtype = 'U8' | 'I8' | 'F32';

/** The forms a layer is kept in: MatMulInteger's channels, MatMulNBits' blocks, or both. */
export interface LayerForms {
  channels: boolean;
  blocks?: { bits: 4 | 8; blockSize: number };
}

/**
 * How each mode stores a weight, by the rows its layer multiplies and whether the CPU provider runs it; `tag` names the
 * mode's cache file.
 */
const MODES: Record<
  Exclude<WeightQuantization, 'none'>,
  { tag: string; forms(used: ProductRows, onCpu: boolean): LayerForms }
> = {
  // On the CPU the integer GEMM for many rows, MatMulNBits' 8-bit kernel for one: the same codes either way. A GPU
  // provider has no integer GEMM kernel, so there every product goes through the 8-bit blocks.
  int8: {
    tag: 'channels',
    forms: (used, onCpu) => ({
      channels: onCpu && used !== 'one',
      blocks: used === 'many' ? undefined : { bits: 8, blockSize: INT8_BLOCK_SIZE },
    }),
  },
  // 4-bit blocks with zero points for the decoder; a vision tower's passes (quantized on the CPU only) in 8-bit channels.
  int4: {
    tag: `b${INT4_BLOCK_SIZE}-zp`,
    forms: (used) =>
      used === 'many' ? { channels: true } : { channels: false, blocks: { bits: 4, blockSize: INT4_BLOCK_SIZE } },
  },
};

/** The tensors of a weight [rows = out, cols = in] in `forms`: name suffix → dtype and shape, in the order written. */
function formTensors(
  rows: number,
  cols: number,
  forms: LayerForms,
): Record<string, { dtype: StoredDtype; shape: number[] }> {
  const tensors: Record<string, { dtype: StoredDtype; shape: number[] }> = {};
  if (forms.channels) {
    tensors.q = { dtype: 'I8', shape: [cols, rows] };
    tensors.scales = { dtype: 'F32', shape: [rows] };
    tensors.sums = { dtype: 'F32', shape: [rows] };
  }
  if (forms.blocks) {
    const { bits, blockSize } = forms.blocks;
    const { blocksPerRow, blobBytes, zeroPointBytes } = blockLayout(cols, blockSize, bits);
    tensors.blocks = { dtype: 'U8', shape: [rows, blocksPerRow, blobBytes] };
    tensors.block_scales = { dtype: 'F32', shape: [rows * blocksPerRow] };
    // 8-bit blocks are the channels' symmetric codes; 4-bit ones are asymmetric.
    if (bits === 4) tensors.block_zero_points = { dtype: 'U8', shape: [rows * zeroPointBytes] };
  }
  return tensors;
}

const tensorBytes = (dtype: StoredDtype, shape: number[]) =>
  shape.reduce((product, dim) => product * dim, DTYPE_BYTES[dtype]);

/**
 * Refuses a weight holding NaN or ±Infinity, which a checkpoint cut or written wrong can: int4 would turn its whole
 * block into zeros and answer as if nothing were wrong, int8 every product of its channel into NaN.
 */
export function refuseNonFinite(weights: Float32Array, weight: TensorLocation): void {
  let at = 0;
  // w − w is 0 for every finite w, NaN for NaN and ±Infinity: about 2 ns a weight here, findIndex 9.
  while (at < weights.length && weights[at] - weights[at] === 0) at++;
  if (at === weights.length) return;
  const cols = weight.shape[1];
  throw new FicocoError(
    `Tensor "${weight.name}" in ${weight.file} holds ${weights[at]} at [${Math.floor(at / cols)}, ${at % cols}], ` +
      'which no weight can be; the checkpoint is corrupt — download it again.',
    'weights',
  );
}

/** The bytes of each tensor of `formTensors`, by suffix. */
export function encodeForms(
  weights: Float32Array,
  rows: number,
  cols: number,
  forms: LayerForms,
): Record<string, Int8Array | Uint8Array | Float32Array> {
  const encoded: Record<string, Int8Array | Uint8Array | Float32Array> = {};
  let channels: ChannelQuantized | undefined;
  const inChannels = () => (channels ??= quantizeChannels(weights, rows, cols));
  if (forms.channels) {
    const { data, scales, sums } = inChannels();
    Object.assign(encoded, { q: data, scales, sums });
  }
  if (forms.blocks) {
    const { bits, blockSize } = forms.blocks;
    // 8-bit blocks hold the channels' own codes, so a decode step multiplies by the prompt's weights.
    const blocks =
      bits === 8 ? channelsAsBlocks(inChannels(), blockSize) : quantizeBlocks(weights, rows, cols, blockSize);
    Object.assign(encoded, { blocks: blocks.data, block_scales: blocks.scales });
    if (blocks.zeroPoints) encoded.block_zero_points = blocks.zeroPoints;
  }
  return encoded;
}

function describeForms(
  rows: number,
  cols: number,
  forms: LayerForms,
  stored: (suffix: string) => TensorLocation,
): QuantizedLinear {
  const channels = forms.channels ? { data: stored('q'), scales: stored('scales'), sums: stored('sums') } : undefined;
  if (!forms.blocks) {
    if (!channels) throw new Error('a quantization mode kept a layer in no form');
    return { channels };
  }
  const blocks = {
    ...forms.blocks,
    inFeatures: cols,
    outFeatures: rows,
    data: stored('blocks'),
    scales: stored('block_scales'),
    ...(forms.blocks.bits === 4 && { zeroPoints: stored('block_zero_points') }),
  };
  return { blocks, channels };
}

export class WeightQuantizer {
  private readonly requested: { weight: TensorLocation; used: ProductRows; floatStays: boolean }[] = [];
  private readonly ready = new Map<string, QuantizedLinear>();

  constructor(
    private readonly index: WeightIndex,
    readonly mode: Exclude<WeightQuantization, 'none'>,
    private readonly options: {
      /** whether the sessions will run on the CPU provider, whose integer GEMM takes a vision tower's passes */
      onCpu: boolean;
      /** for weights in a Hugging Face cache or a read-only folder: the folder of FiCoCo's own that takes their cache */
      cacheDir?: string;
      /** how many processes quantize (default: one per core, up to 8) */
      workers?: number;
      /**
       * Where memory is short: a layer the cache keeps in two forms is read in its channels alone, so int8's decode
       * steps multiply in the prompts' integer GEMM and each layer is held once. The cache file is the same.
       */
      oneForm?: boolean;
    },
  ) {}

  private get tag(): string {
    return MODES[this.mode].tag;
  }

  /** The provider placement a cache is laid out for: its name says so, and each keeps its own. */
  private get placement(): Placement {
    return this.options.onCpu ? 'cpu' : 'gpu';
  }

  /** The forms a layer is cached in. */
  private forms(used: ProductRows): LayerForms {
    return MODES[this.mode].forms(used, this.options.onCpu);
  }

  /** The forms the graphs read (and memory holds): with `oneForm`, the channels of a layer cached in both. */
  private heldForms(used: ProductRows): LayerForms {
    const forms = this.forms(used);
    return this.options.oneForm && forms.channels ? { channels: true } : forms;
  }

  /** Whether some layer is cached in two forms (int8's decoder on the CPU): what `oneForm` would hold once. */
  get cachesTwoForms(): boolean {
    return this.requested.some(({ used }) => {
      const forms = this.forms(used);
      return forms.channels && forms.blocks !== undefined;
    });
  }

  /** Whether `oneForm` left out a form some layer is cached in: what the description of the weights says. */
  get holdsOneForm(): boolean {
    return this.options.oneForm === true && this.cachesTwoForms;
  }

  /**
   * Whether the vision tower's linear layers are quantized as well as the decoder's. A tower pass multiplies hundreds
   * of rows, where the CPU's integer GEMM runs 2-4x faster than float32 (VNNI, AMX): on the CPU both modes take the
   * tower in 8-bit integer products. GPU providers have no kernel for those (ONNX Runtime copies MatMulInteger with
   * uint8 activations to the CPU), so there the tower stays as stored.
   */
  get quantizesVisionTower(): boolean {
    return this.options.onCpu;
  }

  /**
   * Asks for `weight` [out, in], multiplied `used` rows at a time, to be quantized; the answer is readable after
   * `materialize()`. `floatStays`: another graph reads the float tensor too (a head tied to the embedding table).
   */
  request(weight: TensorLocation, used: ProductRows, floatStays = false): () => QuantizedLinear {
    this.requested.push({ weight, used, floatStays });
    return () => {
      const quantized = this.ready.get(weight.name);
      if (!quantized) throw new Error(`${weight.name} was requested for quantization but the cache was not built`);
      return quantized;
    };
  }

  /**
   * Opens the cache file of what was requested, writing it first when it does not exist or is damaged (cut short,
   * edited, another build's layout under this name); returns its path.
   */
  async materialize(onTensor?: (done: number, total: number) => void): Promise<string> {
    const source = path.dirname(this.index.files[0]);
    const name = `ficoco-${this.mode}-${this.tag}-${this.placement}-${this.fingerprint()}.quantized`;
    const readable = (file: string) => {
      if (!fs.existsSync(file)) return false;
      try {
        this.read(file);
        return true;
      } catch (error) {
        if (!(error instanceof FicocoError)) throw error;
        return false;
      }
    };
    const inSource = path.join(source, name);
    const beside = !isHfCacheBlobs(source);
    const readableInSource = beside && readable(inSource);
    // A folder FiCoCo cannot write (a packaged install, a shared mount) keeps its cache in FiCoCo's, as a Hub cache does;
    // so does one where a folder (or a pipe) takes the cache's name, which no cache written would replace.
    const file =
      readableInSource || (beside && canWriteIn(source) && !occupied(inSource))
        ? inSource
        : path.join(
            this.options.cacheDir ?? DEFAULT_QUANTIZED_CACHE_DIR,
            createHash('sha256').update(source).digest('hex').slice(0, 16),
            name,
          );
    const folder = path.dirname(file);
    removeAbandoned(folder, name);
    if (readableInSource || (file !== inSource && readable(file))) return file;
    fs.mkdirSync(folder, { recursive: true });
    // Whatever layout an older cache of this mode and placement used, it is stale now; this one's own files are left,
    // and the other placement's cache (a CPU fallback from a GPU provider need not cost the GPU's cache).
    removeStale(folder, `ficoco-${this.mode}-`, name, OTHER_PLACEMENT[this.placement]);
    await this.write(file, onTensor);
    this.read(file);
    return file;
  }

  /**
   * The bytes the requested layers take once quantized (every form the graphs read), and the float weights they replace
   * (not one another graph still reads).
   */
  footprint(): { bytes: number; replaces: TensorLocation[] } {
    let bytes = 0;
    for (const { weight, used } of this.requested) {
      const [rows, cols] = weight.shape;
      for (const { dtype, shape } of Object.values(formTensors(rows, cols, this.heldForms(used))))
        bytes += tensorBytes(dtype, shape);
    }
    return { bytes, replaces: this.requested.filter(({ floatStays }) => !floatStays).map(({ weight }) => weight) };
  }

  /** Finds each requested layer's tensors in the cache `file`; a FicocoError when one is missing or not as written. */
  private read(file: string): void {
    const cache = WeightIndex.openFile(file);
    for (const { weight, used } of this.requested) {
      const [rows, cols] = weight.shape;
      const forms = this.forms(used);
      const written = formTensors(rows, cols, forms);
      const stored = (suffix: string) => {
        const tensor = cache.get(`${weight.name}.${suffix}`);
        const { dtype, shape } = written[suffix];
        if (tensor.dtype !== dtype || tensor.shape.join() !== shape.join())
          throw new FicocoError(
            `${file} holds ${tensor.name} as ${tensor.dtype} [${tensor.shape}] instead of ${dtype} [${shape}].`,
            'weights',
          );
        return tensor;
      };
      this.ready.set(weight.name, describeForms(rows, cols, this.heldForms(used), stored));
    }
  }

  private fingerprint(): string {
    const hash = createHash('sha256').update(`${FORMAT_VERSION}:${this.mode}:${this.tag}:${this.options.onCpu}`);
    const files = new Map<string, fs.Stats>();
    for (const { weight, used } of this.requested) {
      if (!files.has(weight.file)) files.set(weight.file, fs.statSync(weight.file));
      const stats = files.get(weight.file)!;
      hash.update(
        JSON.stringify([
          weight.name,
          used,
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

  /**
   * Writes the quantized tensors into `file`: into a .partial of its own first, renamed when complete, so two
   * loads of the model for the first time at once each write a whole file and the last rename wins.
   */
  private async write(file: string, onTensor?: (done: number, total: number) => void): Promise<void> {
    const header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> = {};
    let offset = 0;
    // Each layer's forms and where its tensors start in the data, after the header.
    const layers = this.requested.map(({ weight, used }) => {
      const forms = this.forms(used);
      const [rows, cols] = weight.shape;
      const starts: Record<string, number> = {};
      for (const [suffix, { dtype, shape }] of Object.entries(formTensors(rows, cols, forms))) {
        const bytes = tensorBytes(dtype, shape);
        header[`${weight.name}.${suffix}`] = { dtype, shape, data_offsets: [offset, offset + bytes] };
        starts[suffix] = offset;
        offset += bytes;
      }
      return { weight, forms, starts };
    });
    const partial = `${file}.${hostTag()}.${process.pid}.${randomBytes(6).toString('hex')}.partial`;
    const prefix = safetensorsPrefix(header);
    // The header's write here and the layers' in the workers fail alike (a full disk, a file-size limit).
    const cannotWrite = (error: unknown) =>
      new FicocoError(
        `The ${this.mode} weights cannot be cached in ${path.dirname(file)} ` +
          `(${(error as NodeJS.ErrnoException).code ?? String(error)}); free space or allow writing there, or ` +
          `turn weight quantization off.`,
        'weights',
      );
    try {
      fs.writeFileSync(partial, prefix);
    } catch (error) {
      throw cannotWrite(error);
    }
    // Each layer's tensors go where the header says, written by the process that encodes the layer.
    const jobs = layers.map(({ weight, forms, starts }) => ({
      weight,
      forms,
      file: partial,
      offsets: Object.fromEntries(Object.entries(starts).map(([suffix, start]) => [suffix, prefix.length + start])),
    }));
    try {
      await encodeLayers(jobs, this.options.workers ?? defaultWorkerCount(), onTensor ?? (() => undefined));
    } catch (error) {
      // A partial that cannot be removed (a stopped worker still has it open) is cleared by a later load.
      removeFailedWrite(partial);
      throw error instanceof CacheWriteError ? cannotWrite(error) : error;
    }
    try {
      fs.renameSync(partial, file);
    } catch (error) {
      removeFailedWrite(partial);
      throw new FicocoError(
        `The ${this.mode} weights cannot be cached as ${file} ` +
          `(${(error as NodeJS.ErrnoException).code ?? String(error)}); remove what is there, or turn weight ` +
          `quantization off.`,
        'weights',
      );
    }
  }
}

/** Something other than a file or a link is at `file`: a folder, a pipe, a device. */
function occupied(file: string): boolean {
  const stats = fs.lstatSync(file, { throwIfNoEntry: false });
  return stats !== undefined && !stats.isFile() && !stats.isSymbolicLink();
}

function canWriteIn(folder: string): boolean {
  try {
    fs.accessSync(folder, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** huggingface_hub's `models--owner--name/blobs/`, where snapshot links point. */
function isHfCacheBlobs(folder: string): boolean {
  return path.basename(folder) === 'blobs' && path.basename(path.dirname(folder)).startsWith('models--');
}

/** A partial written on another machine and untouched this long was left by a load that stopped. */
const ABANDONED_PARTIAL_MS = 10 * 60_000;

type Placement = 'cpu' | 'gpu';
const OTHER_PLACEMENT: Record<Placement, Placement> = { cpu: 'gpu', gpu: 'cpu' };

/**
 * Removes the caches and partial caches named `prefix`… other than `current` and its own partials, and other than
 * those laid out for the placement `kept` (`<prefix><tag>-<kept>-<fingerprint>.quantized`…). A partial of another
 * cache goes only once its writer has stopped: a load of other weights under this name (another snapshot of a
 * Hugging Face model, whose blobs it shares) may be writing it now.
 */
function removeStale(folder: string, prefix: string, current: string, kept: Placement): void {
  const keptName = new RegExp(`-${kept}-[0-9a-f]{16}\\.quantized`);
  for (const name of fs.readdirSync(folder)) {
    if (name.startsWith(current) || keptName.test(name)) continue;
    if (!name.startsWith(prefix) || !(name.endsWith('.quantized') || name.endsWith('.partial'))) continue;
    const cacheName = name.slice(0, name.indexOf('.quantized') + '.quantized'.length);
    if (name.endsWith('.partial') && !writerStopped(folder, name, cacheName)) continue;
    // Only the files a cache leaves: a folder of that name in a model folder is not FiCoCo's to remove.
    const file = path.join(folder, name);
    if (occupied(file)) continue;
    try {
      fs.rmSync(file, { force: true });
    } catch {
      // Clearing is a courtesy, as for abandoned partials: a file that cannot be removed stays, and the load goes on.
    }
  }
}

/**
 * Removes the partials of `current` (`<current>.<host>.<pid>.<random>.partial`) whose writer stopped (writerStopped).
 */
function removeAbandoned(folder: string, current: string): void {
  if (!fs.existsSync(folder)) return;
  for (const name of fs.readdirSync(folder)) {
    if (!name.startsWith(`${current}.`) || !name.endsWith('.partial')) continue;
    if (!writerStopped(folder, name, current)) continue;
    try {
      fs.rmSync(path.join(folder, name), { force: true });
    } catch {
      // Clearing is a courtesy: a folder that became read-only keeps the file, and the load goes on.
    }
  }
}

/**
 * Whether the load writing the partial `name` of the cache `cache` has stopped: on this machine, its process is gone;
 * written elsewhere (or by an older build), untouched for ABANDONED_PARTIAL_MS.
 */
function writerStopped(folder: string, name: string, cache: string): boolean {
  const [host, pid] = name.slice(cache.length + 1).split('.');
  // Another load may rename its partial away meanwhile: a name gone counts as old.
  const writtenAt = fs.statSync(path.join(folder, name), { throwIfNoEntry: false })?.mtimeMs ?? 0;
  return host === hostTag() && /^\d+$/.test(pid)
    ? !processAlive(Number(pid))
    : Date.now() - writtenAt >= ABANDONED_PARTIAL_MS;
}

/** This machine's name as a file name part. */
function hostTag(): string {
  return os.hostname().replace(/[^A-Za-z0-9-]/g, '-') || 'host';
}
