/**
 * Weight-only block quantization in ONNX Runtime's MatMulNBits layout: a weight W [rows = out, cols = in]
 * is cut into blocks of `blockSize` along each row; every block keeps a float scale and an n-bit zero point.
 */

import type { WeightQuantization } from '../../common/quantization';

export const QUANT_BLOCK_SIZE = 32;

export interface BlockQuantized {
  bits: 4 | 8;
  blockSize: number;
  rows: number;
  cols: number;
  blocksPerRow: number;
  /** [rows, blocksPerRow, blockSize·bits/8]; two 4-bit values per byte, the even element in the low nibble */
  data: Uint8Array;
  /** [rows · blocksPerRow] */
  scales: Float32Array;
  /** [rows, ⌈blocksPerRow·bits/8⌉], packed like `data` */
  zeroPoints: Uint8Array;
}

export function bitsOf(mode: Exclude<WeightQuantization, 'none'>): 4 | 8 {
  return mode === 'int4' ? 4 : 8;
}

/** Where a row of `cols` weights goes: its blocks, the bytes of one block, the bytes of the row's zero points. */
export function blockLayout(
  cols: number,
  bits: 4 | 8,
  blockSize = QUANT_BLOCK_SIZE,
): { blocksPerRow: number; blobBytes: number; zeroPointRowBytes: number } {
  const blocksPerRow = Math.ceil(cols / blockSize);
  return { blocksPerRow, blobBytes: (blockSize * bits) / 8, zeroPointRowBytes: Math.ceil((blocksPerRow * bits) / 8) };
}

/**
 * Per block: s = (max − min)/(2^b − 1) with min ≤ 0 ≤ max, z = round(−min/s), q = clamp(round(w/s) + z, 0, 2^b − 1).
 */
export function quantizeBlocks(
  weights: Float32Array,
  rows: number,
  cols: number,
  bits: 4 | 8,
  blockSize = QUANT_BLOCK_SIZE,
): BlockQuantized {
  const levels = (1 << bits) - 1;
  const { blocksPerRow, blobBytes, zeroPointRowBytes } = blockLayout(cols, bits, blockSize);
  const data = new Uint8Array(rows * blocksPerRow * blobBytes);
  const scales = new Float32Array(rows * blocksPerRow);
  const zeroPoints = new Uint8Array(rows * zeroPointRowBytes);
  for (let row = 0; row < rows; row++) {
    for (let block = 0; block < blocksPerRow; block++) {
      const from = row * cols + block * blockSize;
      const count = Math.min(blockSize, cols - block * blockSize);
      let min = 0;
      let max = 0;
      for (let i = 0; i < count; i++) {
        const value = weights[from + i];
        if (value < min) min = value;
        if (value > max) max = value;
      }
      const scale = (max - min) / levels;
      const zero = scale === 0 ? 0 : Math.min(levels, Math.max(0, Math.round(-min / scale)));
      const blockIndex = row * blocksPerRow + block;
      scales[blockIndex] = scale;
      packValue(zeroPoints, row * zeroPointRowBytes, block, zero, bits);
      // Padding past the row's end quantizes 0, i.e. the zero point itself.
      for (let i = 0; i < blockSize; i++) {
        const q =
          i < count && scale !== 0 ? Math.min(levels, Math.max(0, Math.round(weights[from + i] / scale) + zero)) : zero;
        packValue(data, blockIndex * blobBytes, i, q, bits);
      }
    }
  }
  return { bits, blockSize, rows, cols, blocksPerRow, data, scales, zeroPoints };
}

/** w = (q − z)·s, the weight MatMulNBits multiplies by. */
export function dequantizeBlocks(q: BlockQuantized): Float32Array {
  const { bits, blockSize, rows, cols, blocksPerRow } = q;
  const { blobBytes, zeroPointRowBytes } = blockLayout(cols, bits, blockSize);
  const weights = new Float32Array(rows * cols);
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < cols; col++) {
      const block = Math.floor(col / blockSize);
      const blockIndex = row * blocksPerRow + block;
      const zero = unpackValue(q.zeroPoints, row * zeroPointRowBytes, block, bits);
      weights[row * cols + col] =
        (unpackValue(q.data, blockIndex * blobBytes, col % blockSize, bits) - zero) * q.scales[blockIndex];
    }
  }
  return weights;
}

function packValue(bytes: Uint8Array, start: number, index: number, value: number, bits: 4 | 8): void {
  if (bits === 8) {
    bytes[start + index] = value;
    return;
  }
  const at = start + (index >> 1);
  bytes[at] = index & 1 ? (bytes[at] & 0x0f) | (value << 4) : (bytes[at] & 0xf0) | value;
}

function unpackValue(bytes: Uint8Array, start: number, index: number, bits: 4 | 8): number {
  if (bits === 8) return bytes[start + index];
  const byte = bytes[start + (index >> 1)];
  return index & 1 ? byte >> 4 : byte & 0x0f;
}
