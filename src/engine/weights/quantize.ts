/**
 * The stored forms of a quantized weight W [rows = out, cols = in]:
 * - blocks, ONNX Runtime's MatMulNBits layout: each row cut into blocks of `blockSize`, one float scale per block.
 *   int4 blocks also keep a 4-bit zero point each (asymmetric, as GPTQ and AWQ store blocks of 128). int8 keeps this
 *   form, symmetric, for one-row products (decode steps, the head), where MatMulNBits' 8-bit kernel reads weights
 *   faster than the integer GEMM does, and for every product on a GPU provider, which has no integer GEMM kernel.
 * - int8 channels, for ONNX Runtime's integer matrix product (MatMulInteger) on the CPU, a vision tower's in either
 *   mode: one scale per output channel, stored transposed [in, out] as MatMulInteger's B, so each token's
 *   activations, quantized to 8 bits, multiply in integers (AMX, VNNI or AVX2 kernels).
 */

/**
 * int4 weights per block: 4.28 bits a weight with its float32 scale and zero point. MatMulNBits' int8-activation
 * kernel multiplies 616 rows 1.37× faster in blocks of 128 than of 64 here (AVX-512 VNNI); the zero point and the
 * searched step keep the error of a product at what symmetric blocks of 64 had.
 */
export const INT4_BLOCK_SIZE = 128;

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
  /** 4 bits: [rows, zeroPointBytes], two blocks' zero points a byte, the even block's in the low nibble */
  zeroPoints?: Uint8Array;
}

/** Where a row of `cols` weights goes: its blocks, the bytes of one block and of the row's 4-bit zero points. */
export function blockLayout(
  cols: number,
  blockSize = INT4_BLOCK_SIZE,
  bits: 4 | 8 = 4,
): { blocksPerRow: number; blobBytes: number; zeroPointBytes: number } {
  const blocksPerRow = Math.ceil(cols / blockSize);
  return { blocksPerRow, blobBytes: (blockSize * bits) / 8, zeroPointBytes: Math.ceil(blocksPerRow / 2) };
}

/** MatMulNBits' zero point when none is given: the middle of the unsigned range, 2^(bits−1). */
const implicitZero = (bits: 4 | 8) => 2 ** (bits - 1);

/**
 * The int4 steps tried per block: its range over 15 steps, then narrower ones that clip its extremes (on Gaussian and
 * t-distributed weights under 1 % of blocks of 128 chose 0.8 or less).
 */
const INT4_RANGE_SHRINKS = [1, 0.95, 0.9, 0.85];

/**
 * Per block, with lo = min(w, 0) and hi = max(w, 0): z = round(15·(−lo)/(hi − lo)), and of the steps s = f·(hi − lo)/15
 * the one with least Σ((q − z)·s − w)², q = clamp(round(w/s) + z, 0, 15) (clipping a lone outlier can round the rest
 * finer, as llama.cpp's k-quants and AWQ's clipping search find).
 */
export function quantizeBlocks(
  weights: Float32Array,
  rows: number,
  cols: number,
  blockSize = INT4_BLOCK_SIZE,
): BlockQuantized {
  const { blocksPerRow, blobBytes, zeroPointBytes } = blockLayout(cols, blockSize);
  const data = new Uint8Array(rows * blocksPerRow * blobBytes);
  const scales = new Float32Array(rows * blocksPerRow);
  const zeroPoints = new Uint8Array(rows * zeroPointBytes);
  for (let row = 0; row < rows; row++) {
    for (let block = 0; block < blocksPerRow; block++) {
      const from = row * cols + block * blockSize;
      const count = Math.min(blockSize, cols - block * blockSize);
      let lo = 0;
      let hi = 0;
      for (let i = 0; i < count; i++) {
        lo = Math.min(lo, weights[from + i]);
        hi = Math.max(hi, weights[from + i]);
      }
      // An all-zero block: step 0 and zero point 0.
      const zero = hi === lo ? 0 : Math.round((15 * -lo) / (hi - lo));
      let scale = 0;
      let leastError = Infinity;
      for (const shrink of hi === lo ? [] : INT4_RANGE_SHRINKS) {
        // Math.fround: the stored scale, so rounding divides by what MatMulNBits multiplies by.
        const candidate = Math.fround((shrink * (hi - lo)) / 15);
        const error = squaredError(weights, from, count, candidate, zero);
        if (error < leastError) {
          scale = candidate;
          leastError = error;
        }
      }
      const blockIndex = row * blocksPerRow + block;
      scales[blockIndex] = scale;
      packNibble(zeroPoints, row * zeroPointBytes, block, zero);
      // Padding past the row's end quantizes 0, i.e. the zero point itself.
      for (let i = 0; i < blockSize; i++)
        packNibble(
          data,
          blockIndex * blobBytes,
          i,
          i < count && scale !== 0 ? int4Code(weights[from + i], scale, zero) : zero,
        );
    }
  }
  return { bits: 4, blockSize, rows, cols, blocksPerRow, data, scales, zeroPoints };
}

/** Math.round(x) as floor(x + 0.5): 3–4× faster in V8 here, and quantizing a model rounds every weight 1–5 times. */
function roundHalfUp(x: number): number {
  return Math.floor(x + 0.5);
}

/** q = clamp(round(w/s) + z, 0, 15) */
function int4Code(weight: number, step: number, zero: number): number {
  const code = roundHalfUp(weight / step) + zero;
  return code < 0 ? 0 : code > 15 ? 15 : code;
}

/** Σ((q − z)·s − w)² over the block of `count` weights at `from` */
function squaredError(weights: Float32Array, from: number, count: number, step: number, zero: number): number {
  let sum = 0;
  for (let i = from; i < from + count; i++) {
    const difference = (int4Code(weights[i], step, zero) - zero) * step - weights[i];
    sum += difference * difference;
  }
  return sum;
}

/** w = (q − z)·s, the weight MatMulNBits multiplies by. */
export function dequantizeBlocks(q: BlockQuantized): Float32Array {
  const { bits, blockSize, rows, cols, blocksPerRow } = q;
  const { blobBytes, zeroPointBytes } = blockLayout(cols, blockSize, bits);
  const weights = new Float32Array(rows * cols);
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < cols; col++) {
      const block = Math.floor(col / blockSize);
      const blockIndex = row * blocksPerRow + block;
      const start = blockIndex * blobBytes;
      const code = bits === 4 ? unpackNibble(q.data, start, col % blockSize) : q.data[start + (col % blockSize)];
      const zero = q.zeroPoints ? unpackNibble(q.zeroPoints, row * zeroPointBytes, block) : implicitZero(bits);
      weights[row * cols + col] = (code - zero) * q.scales[blockIndex];
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

/** Per output channel (row) r: s_r = max|w_r|/127 and q = clamp(round(w/s_r), ±127), symmetric, stored transposed. */
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
      // Within ±127 but where the scale is subnormal, rounded below max|w|/127 by up to half its last bit; unclamped,
      // a code past 127 would wrap around in the Int8Array and flip the weight's sign.
      const q = Math.min(127, Math.max(-127, roundHalfUp(weights[row * cols + col] / scale)));
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
