import fs from 'node:fs';
import type { SafetensorsDType } from './dtype';
import { MAX_IO_CHUNK } from './safetensors';

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** raw little-endian bytes */
  data: Uint8Array;
}

/** Writes a .safetensors file (header padded to 8 bytes like the reference writer); returns the header length. */
export function writeSafetensors(
  file: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): number {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const tensor of tensors) {
    header[tensor.name] = {
      dtype: tensor.dtype,
      shape: tensor.shape,
      data_offsets: [offset, offset + tensor.data.byteLength],
    };
    offset += tensor.data.byteLength;
  }
  writeRawSafetensors(file, header, Buffer.concat(tensors.map((tensor) => tensor.data)));
  return headerBytes(header).byteLength;
}

/**
 * Writes every byte of `bytes` into the open file `fd` at `position`. One write may move fewer bytes than asked (Linux
 * moves at most 2 GiB - 4 KiB a call, a file size limit stops one part-way), so the rest goes in further writes.
 */
export function writeWhole(fd: number, bytes: Uint8Array, position: number): void {
  let written = 0;
  while (written < bytes.byteLength)
    written += fs.writeSync(fd, bytes, written, Math.min(bytes.byteLength - written, MAX_IO_CHUNK), position + written);
}

/** Writes any header object followed by `data` (tests use it to craft corrupt files). */
export function writeRawSafetensors(file: string, header: unknown, data: Uint8Array = new Uint8Array(0)): void {
  fs.writeFileSync(file, Buffer.concat([safetensorsPrefix(header), data]));
}

/** The bytes before the tensor data: the header's length (u64 little-endian), then the padded JSON header. */
export function safetensorsPrefix(header: unknown): Buffer {
  const json = headerBytes(header);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.byteLength));
  return Buffer.concat([length, json]);
}

function headerBytes(header: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  return Buffer.concat([json, Buffer.alloc((8 - (json.byteLength % 8)) % 8, ' ')]);
}

export function bytesOf(values: Float32Array | Float64Array | Uint16Array | Int32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}
