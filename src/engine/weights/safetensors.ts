import fs from 'node:fs';
import path from 'node:path';
import { formatBytes } from '../../common/bytes';
import { FicocoError } from '../../common/errors';
import { readModelJson } from '../text/json-file';
import { DTYPE_BYTES, bfloat16ToFloat32, float16ToFloat32, isSafetensorsDType, type SafetensorsDType } from './dtype';

export { bfloat16ToFloat32, float16ToFloat32, type SafetensorsDType } from './dtype';

export interface TensorLocation {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** real path (symlinks resolved, e.g. Hugging Face cache snapshots point into blobs/) */
  file: string;
  /** absolute byte offset of the data in that file: 8 + headerLength + data_offsets[0] */
  byteOffset: number;
  byteLength: number;
}

const SINGLE_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';
/** The reference safetensors implementation refuses larger headers too. */
const MAX_HEADER_BYTES = 100_000_000;
/** Bytes one readSync or writeSync moves at most: below the 2 GiB a call can move (and Windows' 32-bit lengths). */
export const MAX_IO_CHUNK = 1 << 30;

/** Where every tensor of a model folder lives; built from the safetensors headers alone. */
export class WeightIndex {
  private constructor(
    readonly modelDir: string,
    /** real paths, in shard order */
    readonly files: string[],
    private readonly tensors: ReadonlyMap<string, TensorLocation>,
  ) {}

  /** model.safetensors, or model.safetensors.index.json + shards, or several *.safetensors without index */
  static open(modelDir: string): WeightIndex {
    return WeightIndex.fromLayout(modelDir, findWeightFiles(modelDir));
  }

  /** One safetensors file on its own (e.g. saved tensors for `ficoco reduce`, reference outputs). */
  static openFile(file: string): WeightIndex {
    return WeightIndex.fromLayout(path.dirname(file), {
      shards: [path.basename(file)],
      indexed: false,
      weightMap: new Map(),
    });
  }

  private static fromLayout(modelDir: string, layout: WeightLayout): WeightIndex {
    const files: string[] = [];
    const tensors = new Map<string, TensorLocation>();
    const shardOf = new Map<string, string>();
    for (const shard of layout.shards) {
      const realPath = resolveShard(modelDir, shard, layout.indexed);
      files.push(realPath);
      for (const location of readHeader(realPath, shard)) {
        const previous = shardOf.get(location.name);
        if (previous !== undefined) {
          throw new FicocoError(
            `Tensor "${location.name}" is stored in both ${previous} and ${shard} in ${modelDir}; ` +
              'the folder mixes files from different checkpoints — remove the stray .safetensors files or download ' +
              'the model again.',
            'weights',
          );
        }
        tensors.set(location.name, location);
        shardOf.set(location.name, shard);
      }
    }
    for (const [name, shard] of layout.weightMap) {
      if (shardOf.get(name) !== shard) {
        throw new FicocoError(
          `${INDEX_FILE} in ${modelDir} places tensor "${name}" in ${shard}, but that file's header does not ` +
            `contain it; ` +
            'the index and the shards come from different revisions — download the model again.',
          'weights',
        );
      }
    }
    return new WeightIndex(modelDir, files, tensors);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get(name: string): TensorLocation {
    const location = this.tensors.get(name);
    if (location === undefined) {
      throw new FicocoError(
        `Tensor "${name}" is not in the weights of ${this.modelDir} (${this.tensors.size} tensors in ` +
          `${this.files.length} file(s)); the checkpoint does not match its config.json or uses weight names ` +
          `this version does not know.`,
        'weights',
      );
    }
    return location;
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  /** first existing name among alternatives (weight names differ between transformers versions) */
  find(...candidates: string[]): TensorLocation | undefined {
    for (const name of candidates) {
      const location = this.tensors.get(name);
      if (location !== undefined) return location;
    }
    return undefined;
  }

  /** Reads one tensor and widens F16 / BF16 / F64 to float32 (F32 is returned as stored). */
  readFloat32(name: string): Float32Array {
    return readFloat32(this.get(name));
  }

  /** An integer tensor (I64, I32, I16, I8, U8, BOOL) as plain numbers, e.g. spans and grid sizes. */
  readIntegers(name: string): number[] {
    const location = this.get(name);
    const bytes = readFileRange(location.file, location.byteOffset, location.byteLength);
    switch (location.dtype) {
      case 'I64':
        return Array.from(new BigInt64Array(bytes.buffer), Number);
      case 'I32':
        return Array.from(new Int32Array(bytes.buffer));
      case 'I16':
        return Array.from(new Int16Array(bytes.buffer));
      case 'I8':
        return Array.from(new Int8Array(bytes.buffer));
      case 'U8':
      case 'BOOL':
        return Array.from(bytes);
      default:
        throw new FicocoError(
          `Tensor "${name}" in ${location.file} is ${location.dtype}; expected an integer tensor (I64, I32, ` +
            `I16, I8, U8 or BOOL).`,
          'weights',
        );
    }
  }
}

interface WeightLayout {
  /** file names relative to the model folder */
  shards: string[];
  /** true when the shards come from an index, so a missing one is the index's fault */
  indexed: boolean;
  /** tensor name → shard, as the index declares it (empty without an index) */
  weightMap: Map<string, string>;
}

function findWeightFiles(modelDir: string): WeightLayout {
  if (!fs.existsSync(modelDir) || !fs.statSync(modelDir).isDirectory()) {
    throw new FicocoError(
      `Model folder ${modelDir} does not exist or is not a folder; choose a downloaded Hugging Face model folder.`,
      'model-folder',
    );
  }
  if (fs.existsSync(path.join(modelDir, INDEX_FILE))) return readIndex(modelDir);
  if (fs.existsSync(path.join(modelDir, SINGLE_FILE)))
    return { shards: [SINGLE_FILE], indexed: false, weightMap: new Map() };
  const shards = fs
    .readdirSync(modelDir)
    .filter((entry) => entry.endsWith('.safetensors'))
    .sort();
  if (shards.length === 0) {
    throw new FicocoError(
      `${modelDir} has no .safetensors weights (expected ${SINGLE_FILE}, or ${INDEX_FILE} with its shards); ` +
        'PyTorch .bin checkpoints are not supported — download the safetensors version of the model.',
      'model-folder',
    );
  }
  return { shards, indexed: false, weightMap: new Map() };
}

function readIndex(modelDir: string): WeightLayout {
  const indexPath = path.join(modelDir, INDEX_FILE);
  const parsed = readModelJson(indexPath, undefined, 'weights');
  const weightMap = isRecord(parsed) ? parsed['weight_map'] : undefined;
  if (!isRecord(weightMap) || !Object.values(weightMap).every((shard) => typeof shard === 'string')) {
    throw new FicocoError(
      `${indexPath} has no "weight_map" object of tensor name → shard file name; download it again.`,
      'weights',
    );
  }
  const map = new Map(Object.entries(weightMap as Record<string, string>));
  const shards = [...new Set(map.values())].sort();
  // The index is data from the folder: a shard it names is a plain .safetensors file in that folder, nothing else.
  const outside = shards.find((shard) => !/^[^/\\:]+\.safetensors$/.test(shard) || shard.startsWith('.'));
  if (outside !== undefined) {
    throw new FicocoError(
      `${indexPath} names the shard ${JSON.stringify(outside)}, which is not a .safetensors file in the ` +
        `model folder; the index is corrupt — download it again.`,
      'weights',
    );
  }
  return { shards, indexed: true, weightMap: map };
}

function resolveShard(modelDir: string, shard: string, indexed: boolean): string {
  const shardPath = path.join(modelDir, shard);
  if (!fs.existsSync(shardPath)) {
    const why = indexed ? `${INDEX_FILE} names ${shard}, but it is missing` : `${shard} is a broken link`;
    throw new FicocoError(`${why} in ${modelDir}; the download is incomplete — download the model again.`, 'weights');
  }
  return fs.realpathSync(shardPath);
}

/** Reads and validates one file's header: the only part of a (possibly many-GB) shard read at open time. */
function readHeader(realPath: string, displayName: string): TensorLocation[] {
  const stats = fs.statSync(realPath);
  // A folder or a named pipe in a file's place: reading it fails raw, or waits for a writer.
  if (!stats.isFile())
    throw new FicocoError(`${displayName} is not a regular file; download the model again.`, 'weights');
  const fileSize = stats.size;
  if (fileSize < 8) {
    throw new FicocoError(
      `${displayName} is only ${fileSize} bytes, too short for a safetensors file; download it again.`,
      'weights',
    );
  }
  const headerLength = Number(Buffer.from(readFileRange(realPath, 0, 8)).readBigUInt64LE(0));
  if (headerLength < 2 || headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
    throw new FicocoError(
      `${displayName} declares a ${headerLength}-byte header in a ${fileSize}-byte file; it is not a ` +
        `safetensors file or is corrupt — download it again.`,
      'weights',
    );
  }
  const header = parseHeaderJson(readFileRange(realPath, 8, headerLength), displayName);
  const dataStart = 8 + headerLength;
  const locations: TensorLocation[] = [];
  let dataEnd = dataStart;
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const location = parseEntry(name, entry, displayName, realPath, dataStart);
    dataEnd = Math.max(dataEnd, location.byteOffset + location.byteLength);
    locations.push(location);
  }
  refuseOverlaps(locations, displayName);
  if (dataEnd > fileSize) {
    throw new FicocoError(
      `${displayName} is ${formatBytes(dataEnd - fileSize)} shorter than its header says; the download was ` +
        `probably cut off — download it again (${realPath}).`,
      'weights',
    );
  }
  return locations;
}

/** Two tensors sharing bytes means a crafted or corrupt header: one tensor's writes would show in the other. */
function refuseOverlaps(locations: readonly TensorLocation[], displayName: string): void {
  const byStart = [...locations].filter((l) => l.byteLength > 0).sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < byStart.length; i++) {
    const [previous, current] = [byStart[i - 1], byStart[i]];
    if (current.byteOffset < previous.byteOffset + previous.byteLength) {
      throw new FicocoError(
        `${displayName}: tensors "${previous.name}" and "${current.name}" overlap in the file; the header is ` +
          `corrupt — download it again.`,
        'weights',
      );
    }
  }
}

function parseHeaderJson(bytes: Uint8Array, displayName: string): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    header = undefined;
  }
  if (!isRecord(header)) {
    throw new FicocoError(
      `${displayName} has a header that is not a JSON object; it is not a safetensors file or is corrupt — ` +
        `download it again.`,
      'weights',
    );
  }
  return header;
}

function parseEntry(
  name: string,
  entry: unknown,
  displayName: string,
  realPath: string,
  dataStart: number,
): TensorLocation {
  const malformed = (what: string): FicocoError =>
    new FicocoError(
      `${displayName}: tensor "${name}" has ${what} in its header; the file is corrupt — download it again.`,
      'weights',
    );
  if (!isRecord(entry)) throw malformed('no {dtype, shape, data_offsets} entry');
  const { dtype, shape, data_offsets: offsets } = entry;
  if (!isSafetensorsDType(dtype)) {
    throw new FicocoError(
      `${displayName}: tensor "${name}" has dtype ${String(dtype)}, which FiCoCo cannot use (supported: ` +
        `${Object.keys(DTYPE_BYTES).join(', ')}); ` +
        'use a float32, float16 or bfloat16 checkpoint.',
      'weights',
    );
  }
  if (!Array.isArray(shape) || !shape.every(isByteCount)) throw malformed('an invalid shape');
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isByteCount) || offsets[0] > offsets[1]) {
    throw malformed('invalid data_offsets');
  }
  const [begin, end] = offsets as [number, number];
  const expectedLength = (shape as number[]).reduce((product, dim) => product * dim, DTYPE_BYTES[dtype]);
  if (end - begin !== expectedLength) {
    throw malformed(`${end - begin} data bytes where shape [${shape.join(', ')}] × ${dtype} needs ${expectedLength}`);
  }
  return {
    name,
    dtype,
    shape: shape as number[],
    file: realPath,
    byteOffset: dataStart + begin,
    byteLength: end - begin,
  };
}

/** A floating-point tensor of a file already indexed (its location checked against the file) as float32. */
export function readFloat32(location: TensorLocation): Float32Array {
  const bytes = readFileRange(location.file, location.byteOffset, location.byteLength);
  // safetensors is little-endian, as are all hosts Node and ONNX Runtime ship for.
  switch (location.dtype) {
    case 'F32':
      return new Float32Array(bytes.buffer);
    case 'F16':
      return float16ToFloat32(new Uint16Array(bytes.buffer));
    case 'BF16':
      return bfloat16ToFloat32(new Uint16Array(bytes.buffer));
    case 'F64':
      return Float32Array.from(new Float64Array(bytes.buffer));
    default:
      throw new FicocoError(
        `Tensor "${location.name}" in ${location.file} is ${location.dtype}; only floating-point tensors (F64, F32, ` +
          `F16, BF16) can be read as float32.`,
        'weights',
      );
  }
}

/** Reads exactly `length` bytes into a fresh (hence aligned) buffer. */
function readFileRange(file: string, position: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  const fd = fs.openSync(file, 'r');
  try {
    let done = 0;
    while (done < length) {
      const read = fs.readSync(fd, bytes, done, Math.min(length - done, MAX_IO_CHUNK), position + done);
      if (read === 0) {
        throw new FicocoError(
          `${file} ended after ${position + done} bytes while reading ${length} bytes at ${position}; the file ` +
            `changed or is truncated — download it again.`,
          'weights',
        );
      }
      done += read;
    }
  } finally {
    fs.closeSync(fd);
  }
  return bytes;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isByteCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}
