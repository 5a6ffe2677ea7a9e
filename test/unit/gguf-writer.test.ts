/**
 * tools/ggufWriter.ts read back by an independent parser (@huggingface/gguf): metadata, tensor infos and offsets,
 * and the tensors dequantized by ggml's formulas (Q8_0: d·q; Q4_0: d·(q − 8), low nibbles first).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { gguf } from '@huggingface/gguf';
import { type GgmlType, GGML_TYPES, tensorBytes, writeGguf } from '../../tools/ggufWriter';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-gguf-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Deterministic values with a spread of magnitudes and signs. */
function values(count: number, seed: number): Float32Array {
  return Float32Array.from({ length: count }, (_, i) => Math.sin(seed * 7.3 + i * 1.7) * (1 + (i % 5)));
}

function halfToFloat(bits: number): number {
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** ggml's dequantization of `count` values stored as `type` in `bytes`. */
function dequantize(type: GgmlType, bytes: Buffer, count: number): Float32Array {
  const out = new Float32Array(count);
  if (type === 'F32') return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 4 * count));
  if (type === 'F16') {
    for (let i = 0; i < count; i++) out[i] = halfToFloat(bytes.readUInt16LE(2 * i));
    return out;
  }
  const blockBytes = type === 'Q8_0' ? 34 : 18;
  for (let b = 0; b < count / 32; b++) {
    const at = b * blockBytes;
    const d = halfToFloat(bytes.readUInt16LE(at));
    for (let j = 0; j < 32; j++) {
      if (type === 'Q8_0') out[32 * b + j] = d * bytes.readInt8(at + 2 + j);
      else {
        const byte = bytes[at + 2 + (j % 16)];
        out[32 * b + j] = d * ((j < 16 ? byte & 0x0f : byte >> 4) - 8);
      }
    }
  }
  return out;
}

test('metadata, tensor infos and data read back through @huggingface/gguf; quantized blocks within a step', async () => {
  const file = path.join(dir, 'small.gguf');
  const tensors = [
    { name: 'a.weight', shape: [2, 64], type: 'F32' as const, data: values(128, 1) },
    { name: 'b.weight', shape: [3, 32], type: 'F16' as const, data: values(96, 2) },
    { name: 'c.weight', shape: [2, 64], type: 'Q8_0' as const, data: values(128, 3) },
    { name: 'd.weight', shape: [4, 32], type: 'Q4_0' as const, data: values(128, 4) },
  ];
  writeGguf(
    file,
    {
      'general.architecture': { type: 'string', value: 'llama' },
      'llama.block_count': { type: 'u32', value: 2 },
      'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: 1e-5 },
      'tokenizer.ggml.tokens': { type: 'array', itemType: 'string', values: ['<unk>', '<s>', 'héllo'] },
      'tokenizer.ggml.token_type': { type: 'array', itemType: 'i32', values: [2, 3, 1] },
      'general.file_type': { type: 'u32', value: 7 },
    },
    tensors.map(({ name, shape, type, data }) => ({ name, shape, type, values: () => data })),
  );
  const parsed = await gguf(file, { allowLocalFile: true });
  const metadata = parsed.metadata as Record<string, unknown>;
  assert.equal(metadata['general.architecture'], 'llama');
  assert.equal(metadata['llama.block_count'], 2);
  assert.ok(Math.abs((metadata['llama.attention.layer_norm_rms_epsilon'] as number) - 1e-5) < 1e-10);
  assert.deepEqual(metadata['tokenizer.ggml.tokens'], ['<unk>', '<s>', 'héllo']);
  assert.deepEqual(metadata['tokenizer.ggml.token_type'], [2, 3, 1]);
  assert.equal(Number(parsed.tensorDataOffset) % 32, 0);

  const bytes = fs.readFileSync(file);
  for (const [i, tensor] of tensors.entries()) {
    const info = parsed.tensorInfos[i];
    assert.equal(info.name, tensor.name);
    assert.deepEqual(info.shape.map(Number), [...tensor.shape].reverse(), 'innermost dimension first');
    assert.equal(info.dtype, GGML_TYPES[tensor.type]);
    assert.equal(Number(info.offset) % 32, 0);
    const start = Number(parsed.tensorDataOffset + info.offset);
    const stored = bytes.subarray(start, start + tensorBytes(tensor.type, tensor.data.length));
    const back = dequantize(tensor.type, stored, tensor.data.length);
    for (let j = 0; j < tensor.data.length; j++) {
      const block = tensor.data.subarray(32 * Math.floor(j / 32), 32 * Math.floor(j / 32) + 32);
      const amax = block.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      // Half a step (Q8_0), or a whole one for Q4_0, whose codes reach −8·d but only 7·d on the other side; plus
      // the f16 rounding of the scale (2⁻¹¹ of it, times the largest code).
      const error = tensor.type === 'Q8_0' ? amax / 127 / 2 : tensor.type === 'Q4_0' ? amax / 8 : 0;
      const tolerance =
        tensor.type === 'F32' ? 0 : tensor.type === 'F16' ? 1e-3 * Math.abs(tensor.data[j]) : error + amax * 2 ** -10;
      assert.ok(
        Math.abs(back[j] - tensor.data[j]) <= tolerance + 1e-7,
        `${tensor.name}[${j}]: ${back[j]} against ${tensor.data[j]} (±${tolerance})`,
      );
    }
  }
});

test('a row that does not split into 32-value blocks is refused before anything is written', () => {
  const file = path.join(dir, 'bad.gguf');
  assert.throws(
    () => writeGguf(file, {}, [{ name: 'w', shape: [2, 48], type: 'Q4_0', values: () => values(96, 5) }]),
    /w: rows of 48 values do not split into Q4_0 blocks/,
  );
  assert.equal(fs.existsSync(file), false);
});
