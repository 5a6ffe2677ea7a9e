/**
 * A GGUF (version 3) writer for the peer benchmark (bench/peers/): metadata, tensor infos, then the tensors, each
 * at a 32-byte aligned offset, in F32, F16 or ggml's Q8_0 and Q4_0 block formats. Streams tensor by tensor, so a
 * 4 GB model never sits in memory twice.
 */
import * as fs from 'node:fs';
import { float32ToFloat16 } from '../src/engine/weights/dtype';

/** ggml_type ids of the formats written here. */
export const GGML_TYPES = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;
export type GgmlType = keyof typeof GGML_TYPES;

/** GGUF metadata value types. */
const VALUE = { UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10 } as const;

export type GgufValue =
  | { type: 'u32' | 'i32' | 'f32'; value: number }
  | { type: 'u64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: 'i32' | 'f32' | 'string'; values: readonly (number | string)[] };

export interface GgufTensor {
  name: string;
  /** row-major, outermost first (as safetensors and PyTorch); GGUF stores the innermost dimension first */
  shape: readonly number[];
  type: GgmlType;
  /** the values, row-major, in float32 */
  values: () => Float32Array;
}

/** Values per quantization block, and bytes per block, of the block formats. */
const BLOCK = { Q8_0: { values: 32, bytes: 34 }, Q4_0: { values: 32, bytes: 18 } } as const;
const ALIGNMENT = 32;

/** Bytes `count` values take in `type`. */
export function tensorBytes(type: GgmlType, count: number): number {
  if (type === 'F32') return 4 * count;
  if (type === 'F16') return 2 * count;
  return (count / BLOCK[type].values) * BLOCK[type].bytes;
}

/** Writes a GGUF file: `metadata` in order, then every tensor. */
export function writeGguf(file: string, metadata: Record<string, GgufValue>, tensors: readonly GgufTensor[]): void {
  const head: Buffer[] = [
    u32(0x46554747),
    u32(3),
    u64(BigInt(tensors.length)),
    u64(BigInt(Object.keys(metadata).length)),
  ];
  for (const [key, value] of Object.entries(metadata)) head.push(string(key), ...encodeValue(value));
  let offset = 0;
  for (const tensor of tensors) {
    const count = tensor.shape.reduce((a, b) => a * b, 1);
    const innermost = tensor.shape[tensor.shape.length - 1];
    if (tensor.type in BLOCK && innermost % BLOCK[tensor.type as keyof typeof BLOCK].values !== 0)
      throw new RangeError(`${tensor.name}: rows of ${innermost} values do not split into ${tensor.type} blocks`);
    head.push(
      string(tensor.name),
      u32(tensor.shape.length),
      ...[...tensor.shape].reverse().map((dim) => u64(BigInt(dim))),
      u32(GGML_TYPES[tensor.type]),
      u64(BigInt(offset)),
    );
    offset = align(offset + tensorBytes(tensor.type, count));
  }
  const header = Buffer.concat(head);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, header);
    fs.writeSync(fd, Buffer.alloc(align(header.length) - header.length));
    for (const tensor of tensors) {
      const data = encodeTensor(tensor.type, tensor.values());
      fs.writeSync(fd, data);
      fs.writeSync(fd, Buffer.alloc(align(data.length) - data.length));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The bytes of `values` in `type`. */
export function encodeTensor(type: GgmlType, values: Float32Array): Buffer {
  if (type === 'F32') return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  if (type === 'F16') {
    const half = float32ToFloat16(values);
    return Buffer.from(half.buffer, half.byteOffset, half.byteLength);
  }
  const out = Buffer.alloc(tensorBytes(type, values.length));
  const blocks = values.length / 32;
  for (let b = 0; b < blocks; b++) {
    const block = values.subarray(32 * b, 32 * b + 32);
    const at = b * BLOCK[type].bytes;
    if (type === 'Q8_0') quantizeQ8(block, out, at);
    else quantizeQ4(block, out, at);
  }
  return out;
}

/** Q8_0: d = max|x| / 127, q = round(x / d) as int8; stored as f16 d, then 32 bytes. */
function quantizeQ8(block: Float32Array, out: Buffer, at: number): void {
  const amax = block.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const d = amax / 127;
  const inverse = d ? 1 / d : 0;
  out.writeUInt16LE(float32ToFloat16(Float32Array.of(d))[0], at);
  for (let i = 0; i < 32; i++) out.writeInt8(Math.round(block[i] * inverse), at + 2 + i);
}

/**
 * Q4_0: d = (the value of largest magnitude) / −8, q = min(15, ⌊x/d + 8.5⌋); stored as f16 d, then 16 bytes holding
 * values 0–15 in the low nibbles and 16–31 in the high ones (ggml's quantize_row_q4_0_ref).
 */
function quantizeQ4(block: Float32Array, out: Buffer, at: number): void {
  let max = 0;
  for (const x of block) if (Math.abs(x) > Math.abs(max)) max = x;
  const d = max / -8;
  const inverse = d ? 1 / d : 0;
  out.writeUInt16LE(float32ToFloat16(Float32Array.of(d))[0], at);
  const q = (x: number) => Math.min(15, Math.trunc(x * inverse + 8.5));
  for (let j = 0; j < 16; j++) out[at + 2 + j] = q(block[j]) | (q(block[j + 16]) << 4);
}

const align = (n: number) => Math.ceil(n / ALIGNMENT) * ALIGNMENT;

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

function u64(value: bigint): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64LE(value);
  return buffer;
}

function string(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([u64(BigInt(bytes.length)), bytes]);
}

function scalar(type: 'i32' | 'f32' | 'string', value: number | string): Buffer {
  if (type === 'string') return string(String(value));
  const buffer = Buffer.alloc(4);
  if (type === 'i32') buffer.writeInt32LE(Number(value));
  else buffer.writeFloatLE(Number(value));
  return buffer;
}

const TYPE_IDS = { i32: VALUE.INT32, f32: VALUE.FLOAT32, string: VALUE.STRING } as const;

function encodeValue(value: GgufValue): Buffer[] {
  switch (value.type) {
    case 'u32':
      return [u32(VALUE.UINT32), u32(value.value)];
    case 'i32':
    case 'f32':
      return [u32(TYPE_IDS[value.type]), scalar(value.type, value.value)];
    case 'u64':
      return [u32(VALUE.UINT64), u64(value.value)];
    case 'bool':
      return [u32(VALUE.BOOL), Buffer.from([value.value ? 1 : 0])];
    case 'string':
      return [u32(VALUE.STRING), string(value.value)];
    case 'array':
      return [
        u32(VALUE.ARRAY),
        u32(TYPE_IDS[value.itemType]),
        u64(BigInt(value.values.length)),
        ...value.values.map((item) => scalar(value.itemType, item)),
      ];
  }
}
