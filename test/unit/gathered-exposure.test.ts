import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ATTENTION, HIDDEN_COSINE, KEY_COSINE, KEY_ROWS, MEAN_KEYS, QUERY_ROWS } from '../../src/engine/graph/segment';
import { GatheredExposure, RowProducts } from '../../src/engine/runtime/gatheredExposure';
import { SessionFactory } from '../../src/engine/runtime/provider';
import { selectRows, submatrix } from '../../src/reduction/arrays';
import type { AttentionNeeds } from '../../src/reduction/tokenState';
import { maxAbsDiff } from '../helpers/assertions';

// Seven prompt tokens in two chunks (4 + 3); tokens 2 and 5 are structure (a tiled image's row ends).
const COUNT = 7;
const CONTENT = Int32Array.of(0, 1, 3, 4, 6);
const CHUNKS: [start: number, tokens: number][] = [
  [0, 4],
  [4, 3],
];
/** spare cache slots past those in use, as the engine's cache keeps them */
const SPARE_SLOTS = 2;

const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-gathered-'));
const products = new RowProducts(new SessionFactory({ weightsFolder: folder, candidates: ['cpu'], threads: 1 }));
after(async () => {
  await products.release();
  fs.rmSync(folder, { recursive: true, force: true });
});

const values = (length: number, seed: number) =>
  Float32Array.from({ length }, (_, i) => Math.sin(seed * 7.1 + i * 1.3) + (i % 3) * 0.25);
const tensor = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);

/** What a decoder chunk's run outputs: probabilities over the cache's slots and its own tokens, or rows. */
function chunkOutputs([start, tokens]: [number, number], probs: boolean): Record<string, ort.Tensor> {
  const rows = (width: number, seed: number) =>
    tensor(values(COUNT * width, seed).slice(start * width, (start + tokens) * width), [tokens, width]);
  if (probs) {
    const slots = start + SPARE_SLOTS;
    return { [ATTENTION]: tensor(values(tokens * (slots + tokens), start + 1), [tokens, slots + tokens]) };
  }
  return { [QUERY_ROWS]: rows(6, 2), [KEY_ROWS]: rows(6, 3), [MEAN_KEYS]: rows(5, 4) };
}

async function assembled(needs: AttentionNeeds, probs: boolean, content?: Int32Array) {
  const exposure = new GatheredExposure(COUNT, needs, content);
  for (const chunk of CHUNKS) exposure.add(chunkOutputs(chunk, probs), ...chunk);
  return exposure.assemble(products, tensor(values(COUNT * 8, 5), [COUNT, 8]));
}

test('signals gathered over the content are those over every token without the structure rows and columns', async () => {
  const needs: AttentionNeeds = { attention: 'logits', keys: true, keyCosine: true, hiddenCosine: true };
  for (const probs of [false, true]) {
    const all = await assembled(needs, probs);
    const seen = await assembled(needs, probs, CONTENT);
    const names = probs ? [ATTENTION] : [ATTENTION, KEY_COSINE, HIDDEN_COSINE];
    for (const name of names) {
      assert.deepEqual(seen[name].dims, [CONTENT.length, CONTENT.length], name);
      const expected = submatrix(all[name].data as Float32Array, COUNT, CONTENT);
      assert.ok(maxAbsDiff(seen[name].data as Float32Array, expected) < 1e-6, name);
    }
    if (!probs) {
      assert.deepEqual(seen[MEAN_KEYS].dims, [CONTENT.length, 5]);
      assert.deepEqual(seen[MEAN_KEYS].data, selectRows(all[MEAN_KEYS].data as Float32Array, 5, CONTENT));
    }
  }
});

test('submatrix keeps the rows and columns asked for, in runs or alone', () => {
  const n = 6;
  const matrix = Float32Array.from({ length: n * n }, (_, i) => i);
  for (const keep of [[0, 1, 2, 3, 4, 5], [1, 2, 4], [0, 5], [3]]) {
    const expected = keep.flatMap((row) => keep.map((column) => row * n + column));
    assert.deepEqual([...submatrix(matrix, n, keep)], expected, keep.join(','));
  }
});
