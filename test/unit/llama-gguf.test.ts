/**
 * bench/peers/llamaGguf.ts: the rotary row permutation (Hugging Face's rotate-half pairs → llama.cpp's interleaved
 * pairs) and the GGUF it writes for a LLaVA folder's decoder, read back through @huggingface/gguf.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { gguf } from '@huggingface/gguf';
import { interleaveRotaryRows, llamaShape, writeLlamaGguf } from '../../bench/peers/llamaGguf';
import { writeRandomModel } from '../../bench/randomModel';
import { WeightIndex } from '../../src/engine/weights/safetensors';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();
const FIXTURE = path.join(__dirname, '..', 'fixtures', 'tiny-llava-llama');

/** A small random LLaVA whose vocabulary has room for llama.cpp's control and byte tokens. */
function smallLlava(): string {
  const arch = {
    name: 'small-llama',
    label: 'small random Llama',
    vision: { hidden: 32, intermediate: 64, layers: 2, heads: 2, imageSize: 28, patch: 14 },
    text: { hidden: 64, intermediate: 128, layers: 3, heads: 4, kvHeads: 2, vocab: 512 },
  };
  return writeRandomModel(arch, path.join(temporaryFolder('ficoco-llama-gguf-'), 'small-llama'));
}

/** Rotates pairs (first, second) of each head by θ_i = position · base^(−2i/d). */
function rotate(q: Float64Array, heads: number, position: number, pair: (i: number, half: number) => [number, number]) {
  const headDim = q.length / heads;
  const half = headDim / 2;
  const out = Float64Array.from(q);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++) {
      const angle = position * 10000 ** ((-2 * i) / headDim);
      const [a, b] = pair(i, half).map((k) => h * headDim + k);
      out[a] = q[a] * Math.cos(angle) - q[b] * Math.sin(angle);
      out[b] = q[b] * Math.cos(angle) + q[a] * Math.sin(angle);
    }
  return out;
}

function project(weight: Float32Array, x: Float64Array): Float64Array {
  const rows = weight.length / x.length;
  return Float64Array.from({ length: rows }, (_, r) => x.reduce((sum, v, c) => sum + weight[r * x.length + c] * v, 0));
}

test('permuted Q rows rotated as interleaved pairs equal the Hugging Face rows rotated as halves', () => {
  const [heads, headDim, columns] = [2, 8, 3];
  const weight = Float32Array.from({ length: heads * headDim * columns }, (_, i) => Math.sin(i * 1.3) + i / 50);
  const x = Float64Array.of(0.3, -1.2, 0.7);
  const halves = rotate(project(weight, x), heads, 5, (i, half) => [i, i + half]);
  const pairs = rotate(project(interleaveRotaryRows(weight, heads, columns), x), heads, 5, (i) => [2 * i, 2 * i + 1]);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < headDim / 2; i++)
      for (let j = 0; j < 2; j++)
        assert.ok(Math.abs(pairs[h * headDim + 2 * i + j] - halves[h * headDim + j * (headDim / 2) + i]) < 1e-9);
  assert.notDeepEqual(interleaveRotaryRows(weight, heads, columns), weight, 'the rows moved');
});

test("a LLaVA folder's decoder as GGUF: llama metadata, llama.cpp tensor names, Q and K permuted", async () => {
  const model = smallLlava();
  const config = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
  const shape = llamaShape(config);
  const file = path.join(path.dirname(model), 'decoder.gguf');
  writeLlamaGguf(model, shape, 'F32', file);
  const { metadata, tensorInfos, tensorDataOffset } = await gguf(file, { allowLocalFile: true });
  assert.equal(metadata['general.architecture'], 'llama');
  assert.equal(metadata['llama.block_count'], config.text_config.num_hidden_layers);
  assert.equal(metadata['llama.attention.head_count_kv'], config.text_config.num_key_value_heads);
  assert.equal(metadata['llama.rope.dimension_count'], shape.hidden / shape.heads);
  assert.equal(
    (metadata as unknown as Record<string, unknown[]>)['tokenizer.ggml.tokens'].length,
    config.text_config.vocab_size,
  );
  assert.equal(tensorInfos.length, 2 + 9 * shape.layers + 1);
  const names = tensorInfos.map((t) => t.name);
  for (const name of ['token_embd.weight', 'blk.0.attn_q.weight', 'blk.2.ffn_down.weight', 'output.weight'])
    assert.ok(names.includes(name), name);
  const weights = WeightIndex.open(model);
  const bytes = fs.readFileSync(file);
  const read = (name: string) => {
    const info = tensorInfos.find((t) => t.name === name)!;
    const count = info.shape.reduce((a, b) => a * Number(b), 1);
    const at = Number(tensorDataOffset + info.offset);
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + at, bytes.byteOffset + at + 4 * count));
  };
  const q = weights.readFloat32('language_model.model.layers.1.self_attn.q_proj.weight');
  const k = weights.readFloat32('language_model.model.layers.1.self_attn.k_proj.weight');
  assert.deepEqual(read('blk.1.attn_q.weight'), interleaveRotaryRows(q, shape.heads, shape.hidden));
  assert.deepEqual(read('blk.1.attn_k.weight'), interleaveRotaryRows(k, shape.kvHeads, shape.hidden));
  assert.deepEqual(
    read('blk.1.attn_v.weight'),
    weights.readFloat32('language_model.model.layers.1.self_attn.v_proj.weight'),
  );
});

test('a vocabulary without room for the byte tokens is refused (llama.cpp would crash tokenizing any text)', () => {
  const shape = llamaShape(JSON.parse(fs.readFileSync(path.join(FIXTURE, 'config.json'), 'utf8')));
  const file = path.join(temporaryFolder('ficoco-llama-gguf-'), 'decoder.gguf');
  assert.throws(() => writeLlamaGguf(FIXTURE, shape, 'F32', file), /vocabulary of 128 has no room/);
});
