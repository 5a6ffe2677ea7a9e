/**
 * The stored forms of a quantized weight W [rows = out, cols = in]:
 * - blocks, ONNX Runtime's MatMulNBits layout: each row cut into blocks of `blockSize`, one float scale per block.
 *   int4 blocks are symmetric, like llama.cpp's Q4_0: no zero points, so MatMulNBits uses its default 2^(b−1), and
 *   its AVX2 kernels skip a per-block zero point (int4 decode at 616 tokens 9 % faster here than with one). int8 keeps
 *   this form for one-row products (decode steps, the head), where MatMulNBits' 8-bit kernel reads weights faster
 *   than the integer GEMM does, and for every product on a GPU provider, which has no integer GEMM kernel.
 * - int8 channels, for ONNX Runtime's integer matrix product (MatMulInteger) on the CPU, a vision tower's in either
 *   mode: one scale per output channel, stored transposed [in, out] as MatMulInteger's B, so each token's
 *   activations, quantized to 8 bits, multiply in integers (AMX, VNNI or AVX2 kernels).
 */

/**
 * int4 weights per block: 4.5 bits a weight with its float32 scale, like Q4_0's 32 with a float16 one (against blocks
 * of 32: TinyLlama-shaped decode 9 % faster on AVX-512, accuracy within a point on the built-in model).
 */
export const INT4_BLOCK_SIZE = 64;

/** A weight quantized in blocks (4 or 8 bits a code). */
export interface BlockQuantized {
  bits: 4 | 8;
  blockSize: number;
  rows: number;
  cols: number;
  blocksPerRow: number;
  /** [rows, blocksPerRow, blockSize·bits/8]; with 4 bits, two codes a byte, the even element in the low nibble */
  data: Uint8Array;
  /** [rows · blocksPerRow] */
  scales: Float32Array;
}

/** Where a row of `cols` weights goes: its blocks and the bytes of one block. */
export function blockLayout(
  cols: number,
  blockSize = INT4_BLOCK_SIZE,
  bits: 4 | 8 = 4,
): { blocksPerRow: number; blobBytes: number } {
  return { blocksPerRow: Math.ceil(cols / blockSize), blobBytes: (blockSize * bits) / 8 };
}

/** MatMulNBits' zero point when none is given: the middle of the unsigned range, 2^(bits−1). */
const implicitZero = (bits: 4 | 8) => 2 ** (bits - 1);

/**
 * Per block, with m the weight of largest magnitude and z = 8: s = −m/z, q = clamp(round(w/s) + z, 0, 15), so m itself
 * is exact (q = 0) and the other side keeps z − 1 steps, as in llama.cpp's Q4_0.
 */
export function quantizeBlocks(
  weights: Float32Array,
  rows: number,
  cols: number,
  blockSize = INT4_BLOCK_SIZE,
): BlockQuantized {
  const levels = 15;
  const zero = implicitZero(4);
  const { blocksPerRow, blobBytes } = blockLayout(cols, blockSize);
  const data = new Uint8Array(rows * blocksPerRow * blobBytes);
  const scales = new Float32Array(rows * blocksPerRow);
  for (let row = 0; row < rows; row++) {
    for (let block = 0; block < blocksPerRow; block++) {
      const from = row * cols + block * blockSize;
      const count = Math.min(blockSize, cols - block * blockSize);
      let extreme = 0;
      for (let i = 0; i < count; i++) if (Math.abs(weights[from + i]) > Math.abs(extreme)) extreme = weights[from + i];
      // Math.fround: the stored scale, so rounding below divides by what MatMulNBits multiplies by.
      const scale = extreme === 0 ? 0 : Math.fround(-extreme / zero);
      const blockIndex = row * blocksPerRow + block;
      scales[blockIndex] = scale;
      // Padding past the row's end quantizes 0, i.e. the zero point itself.
      for (let i = 0; i < blockSize; i++) {
        const q =
          i < count && scale !== 0 ? Math.min(levels, Math.max(0, Math.round(weights[from + i] / scale) + zero)) : zero;
        packNibble(data, blockIndex * blobBytes, i, q);
      }
    }
  }
  return { bits: 4, blockSize, rows, cols, blocksPerRow, data, scales };
}

/** w = (q − z)·s, the weight MatMulNBits multiplies by. */
export function dequantizeBlocks(q: BlockQuantized): Float32Array {
  const { bits, blockSize, rows, cols, blocksPerRow } = q;
  const { blobBytes } = blockLayout(cols, blockSize, bits);
  const weights = new Float32Array(rows * cols);
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < cols; col++) {
      const blockIndex = row * blocksPerRow + Math.floor(col / blockSize);
      const start = blockIndex * blobBytes;
      const code = bits === 4 ? unpackNibble(q.data, start, col % blockSize) : q.data[start + (col % blockSize)];
      weights[row * cols + col] = (code - implicitZero(bits)) * q.scales[blockIndex];
    }
  }
  return weights;
}

function packNibble(bytes: Uint8Array, start: number, index: number, value: number): void {
  const at = start + (index >> 1);
  bytes[at] = index & 1 ? (bytes[at] & 0x0f) | (value << 4) : (bytes[at] & 0xf0) | value;
}

function unpackNibble(bytes: Uint8Array, start: number, index: number): number {
  const byte = bytes[start + (index >> 1)];
  return index & 1 ? byte >> 4 : byte & 0x0f;
}

/** A weight quantized to 8 bits with one scale per output channel. */
export interface ChannelQuantized {
  rows: number;
  cols: number;
  /** [cols, rows]: Wᵀ, MatMulInteger's B */
  data: Int8Array;
  /** [rows] */
  scales: Float32Array;
  /** [rows]: Σ of each channel's weights as quantized, q·s, which the activations' zero points multiply */
  sums: Float32Array;
}

/** Per output channel (row) r: s_r = max|w_r|/127 and q = round(w/s_r), symmetric, stored transposed. */
export function quantizeChannels(weights: Float32Array, rows: number, cols: number): ChannelQuantized {
  const data = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  const sums = new Float32Array(rows);
  for (let row = 0; row < rows; row++) {
    let extreme = 0;
    for (let col = 0; col < cols; col++) extreme = Math.max(extreme, Math.abs(weights[row * cols + col]));
    // Math.fround: the stored scale, so rounding divides by what the graph multiplies by.
    const scale = Math.fround(extreme / 127);
    scales[row] = scale;
    if (scale === 0) continue;
    let codes = 0;
    for (let col = 0; col < cols; col++) {
      const q = Math.round(weights[row * cols + col] / scale);
      data[col * rows + row] = q;
      codes += q;
    }
    sums[row] = codes * scale;
  }
  return { rows, cols, data, scales, sums };
}

/** w = q·s, the weight the integer product stands for, back in [rows, cols]. */
export function dequantizeChannels(q: ChannelQuantized): Float32Array {
  const weights = new Float32Array(q.rows * q.cols);
  for (let row = 0; row < q.rows; row++)
    for (let col = 0; col < q.cols; col++) weights[row * q.cols + col] = q.data[col * q.rows + row] * q.scales[row];
  return weights;
}

/** The block size of int8 weights in MatMulNBits' layout: its 8-bit kernels' usual one, a multiple of 16. */
export const INT8_BLOCK_SIZE = 128;

/**
 * The same int8 codes in MatMulNBits' 8-bit layout [rows, blocks, blockSize]: each code plus the implicit zero point
 * 128, a padded block's tail 128 (a zero weight), and every block of a row scaled by the row's channel scale, so the
 * one-row product multiplies by exactly the weights of the many-row one.
 */
export function channelsAsBlocks(q: ChannelQuantized, blockSize = INT8_BLOCK_SIZE): BlockQuantized {
  const { rows, cols } = q;
  const zero = implicitZero(8);
  const { blocksPerRow, blobBytes } = blockLayout(cols, blockSize, 8);
  const data = new Uint8Array(rows * blocksPerRow * blobBytes).fill(zero);
  const scales = new Float32Array(rows * blocksPerRow);
  for (let row = 0; row < rows; row++) {
    scales.fill(q.scales[row], row * blocksPerRow, (row + 1) * blocksPerRow);
    const start = row * blocksPerRow * blobBytes;
    for (let col = 0; col < cols; col++) data[start + col] = q.data[col * rows + row] + zero;
  }
  return { bits: 8, blockSize, rows, cols, blocksPerRow, data, scales };
}
