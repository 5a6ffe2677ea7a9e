import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { WeightIndex, bfloat16ToFloat32, float16ToFloat32 } from '../../src/engine/weights/safetensors';
import {
  bytesOf,
  float32ToBfloat16,
  writeRawSafetensors,
  writeSafetensors,
  type TensorToWrite,
} from '../helpers/safetensors-writer';
import { throwsFicoco } from '../helpers/assertions';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-safetensors-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let folderCount = 0;
function modelFolder(): string {
  const dir = path.join(root, `model-${folderCount++}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

function f32(name: string, shape: number[], values: number[]): TensorToWrite {
  return { name, dtype: 'F32', shape, data: bytesOf(new Float32Array(values)) };
}

function writeIndex(dir: string, weightMap: Record<string, string>): void {
  fs.writeFileSync(
    path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
  );
}

describe('WeightIndex layouts', () => {
  test('single model.safetensors: locations point into the file and every float dtype reads as float32', () => {
    const dir = modelFolder();
    const file = path.join(dir, 'model.safetensors');
    const headerLength = writeSafetensors(
      file,
      [
        f32('a.weight', [2, 3], [1, 2, 3, 4, 5, 6]),
        { name: 'b.half', dtype: 'F16', shape: [3], data: bytesOf(new Uint16Array([0x3c00, 0xc000, 0x3800])) },
        { name: 'c.bf16', dtype: 'BF16', shape: [2], data: bytesOf(new Uint16Array([0x3f80, 0xc040])) },
        { name: 'd.f64', dtype: 'F64', shape: [2], data: bytesOf(new Float64Array([0.25, -1e300])) },
        { name: 'e.ids', dtype: 'I32', shape: [1], data: bytesOf(new Int32Array([7])) },
      ],
      { format: 'pt' },
    );
    const weights = WeightIndex.open(dir);
    assert.deepEqual(weights.files, [fs.realpathSync(file)]);
    assert.deepEqual(weights.names().sort(), ['a.weight', 'b.half', 'c.bf16', 'd.f64', 'e.ids']);
    assert.ok(!weights.names().includes('__metadata__'));

    const a = weights.get('a.weight');
    assert.deepEqual(a, {
      name: 'a.weight',
      dtype: 'F32',
      shape: [2, 3],
      file: fs.realpathSync(file),
      byteOffset: 8 + headerLength,
      byteLength: 24,
    });
    assert.equal(weights.get('b.half').byteOffset, 8 + headerLength + 24);
    const raw = fs.readFileSync(file);
    assert.deepEqual(
      new Float32Array(raw.buffer.slice(raw.byteOffset + a.byteOffset, raw.byteOffset + a.byteOffset + a.byteLength)),
      new Float32Array([1, 2, 3, 4, 5, 6]),
    );

    assert.deepEqual(weights.readFloat32('a.weight'), new Float32Array([1, 2, 3, 4, 5, 6]));
    assert.deepEqual(weights.readFloat32('b.half'), new Float32Array([1, -2, 0.5]));
    assert.deepEqual(weights.readFloat32('c.bf16'), new Float32Array([1, -3]));
    assert.deepEqual(weights.readFloat32('d.f64'), new Float32Array([0.25, -Infinity]));
    throwsFicoco(() => weights.readFloat32('e.ids'), 'weights', /"e\.ids".*I32.*only floating-point/);
  });

  test('has / find / get of a missing tensor', () => {
    const dir = modelFolder();
    writeSafetensors(path.join(dir, 'model.safetensors'), [f32('model.language_model.embed_tokens.weight', [1], [1])]);
    const weights = WeightIndex.open(dir);
    assert.ok(weights.has('model.language_model.embed_tokens.weight'));
    assert.ok(!weights.has('language_model.model.embed_tokens.weight'));
    const found = weights.find('language_model.model.embed_tokens.weight', 'model.language_model.embed_tokens.weight');
    assert.equal(found?.name, 'model.language_model.embed_tokens.weight');
    assert.equal(weights.find('x', 'y'), undefined);
    assert.equal(weights.find(), undefined);
    throwsFicoco(
      () => weights.get('lm_head.weight'),
      'weights',
      new RegExp(`"lm_head\\.weight" is not in the weights of ${escape(dir)}`),
    );
  });

  test('sharded with model.safetensors.index.json', () => {
    const dir = modelFolder();
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), [f32('x', [2], [1, 2]), f32('y', [1], [3])]);
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), [f32('z', [1], [4])]);
    writeIndex(dir, {
      x: 'model-00001-of-00002.safetensors',
      y: 'model-00001-of-00002.safetensors',
      z: 'model-00002-of-00002.safetensors',
    });
    const weights = WeightIndex.open(dir);
    assert.deepEqual(weights.files, [
      fs.realpathSync(path.join(dir, 'model-00001-of-00002.safetensors')),
      fs.realpathSync(path.join(dir, 'model-00002-of-00002.safetensors')),
    ]);
    assert.deepEqual(weights.names().sort(), ['x', 'y', 'z']);
    assert.equal(weights.get('z').file, weights.files[1]);
    assert.deepEqual(weights.readFloat32('z'), new Float32Array([4]));
    assert.deepEqual(weights.readFloat32('y'), new Float32Array([3]));
  });

  test('several *.safetensors without an index', () => {
    const dir = modelFolder();
    writeSafetensors(path.join(dir, 'b.safetensors'), [f32('from.b', [1], [2])]);
    writeSafetensors(path.join(dir, 'a.safetensors'), [f32('from.a', [1], [1])]);
    fs.writeFileSync(path.join(dir, 'config.json'), '{}');
    const weights = WeightIndex.open(dir);
    assert.deepEqual(
      weights.files.map((file) => path.basename(file)),
      ['a.safetensors', 'b.safetensors'],
    );
    assert.deepEqual(weights.readFloat32('from.b'), new Float32Array([2]));
  });

  test('Hugging Face cache layout: snapshot symlinks resolve to the blobs', () => {
    const repo = path.join(modelFolder(), 'models--llava-hf--tiny');
    const blobs = path.join(repo, 'blobs');
    const snapshot = path.join(repo, 'snapshots', '0123abcd');
    fs.mkdirSync(blobs, { recursive: true });
    fs.mkdirSync(snapshot, { recursive: true });
    writeSafetensors(path.join(blobs, 'aaa111'), [f32('p', [1], [5])]);
    writeSafetensors(path.join(blobs, 'bbb222'), [f32('q', [1], [6])]);
    fs.writeFileSync(
      path.join(blobs, 'ccc333'),
      JSON.stringify({ weight_map: { p: 'model-00001-of-00002.safetensors', q: 'model-00002-of-00002.safetensors' } }),
    );
    fs.symlinkSync('../../blobs/aaa111', path.join(snapshot, 'model-00001-of-00002.safetensors'));
    fs.symlinkSync('../../blobs/bbb222', path.join(snapshot, 'model-00002-of-00002.safetensors'));
    fs.symlinkSync('../../blobs/ccc333', path.join(snapshot, 'model.safetensors.index.json'));
    const weights = WeightIndex.open(snapshot);
    const realBlobs = fs.realpathSync(blobs);
    assert.deepEqual(weights.files, [path.join(realBlobs, 'aaa111'), path.join(realBlobs, 'bbb222')]);
    assert.equal(weights.get('q').file, path.join(realBlobs, 'bbb222'));
    assert.deepEqual(weights.readFloat32('q'), new Float32Array([6]));
  });
});

describe('WeightIndex validation', () => {
  test('folder missing, or without safetensors', () => {
    throwsFicoco(() => WeightIndex.open(path.join(root, 'nope')), 'model-folder', /does not exist/);
    const dir = modelFolder();
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'x');
    throwsFicoco(
      () => WeightIndex.open(dir),
      'model-folder',
      /has no \.safetensors weights.*model\.safetensors.*index\.json.*\.bin checkpoints are not supported/,
    );
  });

  test('a folder in the place of model.safetensors', () => {
    const dir = modelFolder();
    fs.mkdirSync(path.join(dir, 'model.safetensors'));
    throwsFicoco(
      () => WeightIndex.open(dir),
      'weights',
      /model\.safetensors is not a regular file; download the model again/,
    );
  });

  test('absurd header length', () => {
    const dir = modelFolder();
    const prefix = Buffer.alloc(16);
    prefix.writeBigUInt64LE(0xffff_ffff_ffffn);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), prefix);
    throwsFicoco(
      () => WeightIndex.open(dir),
      'weights',
      /model\.safetensors declares a \d+-byte header in a 16-byte file; it is not a safetensors file/,
    );
  });

  test('file shorter than the length prefix', () => {
    const dir = modelFolder();
    fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.alloc(3));
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /only 3 bytes, too short/);
  });

  test('header that is not JSON, or not an object', () => {
    const dir = modelFolder();
    const text = Buffer.from('{"a": {"dtype": ', 'utf8');
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(text.byteLength));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([prefix, text]));
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /header that is not a JSON object/);
    writeRawSafetensors(path.join(dir, 'model.safetensors'), [1, 2, 3]);
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /header that is not a JSON object/);
  });

  test('truncated shard: says by how much and what to do', () => {
    const dir = modelFolder();
    const shard = 'model-00002-of-00004.safetensors';
    writeSafetensors(path.join(dir, 'model-00001-of-00004.safetensors'), [f32('ok', [1], [1])]);
    // Header promises 1.2 GB of data; only 4 bytes follow.
    writeRawSafetensors(
      path.join(dir, shard),
      { big: { dtype: 'F32', shape: [300_000_000], data_offsets: [0, 1_200_000_000] } },
      new Uint8Array(4),
    );
    writeIndex(dir, { ok: 'model-00001-of-00004.safetensors', big: shard });
    throwsFicoco(
      () => WeightIndex.open(dir),
      'weights',
      /^model-00002-of-00004\.safetensors is 1\.2 GB shorter than its header says; the download was probably cut off — download it again/,
    );
  });

  test('shape × dtype size differs from the byte length', () => {
    const dir = modelFolder();
    writeRawSafetensors(
      path.join(dir, 'model.safetensors'),
      { w: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 24] } },
      new Uint8Array(24),
    );
    throwsFicoco(
      () => WeightIndex.open(dir),
      'weights',
      /tensor "w" has 24 data bytes where shape \[2, 3\] × F16 needs 12/,
    );
  });

  test('malformed entries and unsupported dtypes', () => {
    const dir = modelFolder();
    const file = path.join(dir, 'model.safetensors');
    writeRawSafetensors(file, { w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1));
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /dtype F8_E4M3, which FiCoCo cannot use/);
    writeRawSafetensors(file, { w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4));
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /"w" has invalid data_offsets/);
    writeRawSafetensors(file, { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4));
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /"w" has an invalid shape/);
    writeRawSafetensors(file, { w: 'F32' }, new Uint8Array(4));
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /"w" has no \{dtype, shape, data_offsets\} entry/);
  });

  test('index that names a missing shard', () => {
    const dir = modelFolder();
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), [f32('x', [1], [1])]);
    writeIndex(dir, { x: 'model-00001-of-00002.safetensors', y: 'model-00002-of-00002.safetensors' });
    throwsFicoco(
      () => WeightIndex.open(dir),
      'weights',
      /model\.safetensors\.index\.json names model-00002-of-00002\.safetensors, but it is missing/,
    );
  });

  test('index that disagrees with the shard headers, or is not an index', () => {
    const dir = modelFolder();
    writeSafetensors(path.join(dir, 'model-00001-of-00001.safetensors'), [f32('x', [1], [1])]);
    writeIndex(dir, { x: 'model-00001-of-00001.safetensors', ghost: 'model-00001-of-00001.safetensors' });
    throwsFicoco(
      () => WeightIndex.open(dir),
      'weights',
      /places tensor "ghost" in model-00001-of-00001\.safetensors, but that file's header does not contain it/,
    );
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"metadata": {}}');
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /no "weight_map" object/);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{oops');
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /index\.json is not valid JSON/);
  });

  test('an index naming a shard outside the model folder is refused before anything is opened', () => {
    const dir = modelFolder();
    const elsewhere = modelFolder();
    writeSafetensors(path.join(elsewhere, 'model.safetensors'), [f32('x', [1], [1])]);
    for (const shard of [
      `../${path.basename(elsewhere)}/model.safetensors`,
      path.join(elsewhere, 'model.safetensors'),
      'sub/model.safetensors',
      '.hidden.safetensors',
      'model.bin',
    ]) {
      writeIndex(dir, { x: shard });
      throwsFicoco(
        () => WeightIndex.open(dir),
        'weights',
        /names the shard .*, which is not a \.safetensors file in the model folder/,
      );
    }
  });

  test('tensors whose bytes overlap are refused', () => {
    const dir = modelFolder();
    writeRawSafetensors(
      path.join(dir, 'model.safetensors'),
      { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
      new Uint8Array(12),
    );
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /tensors "a" and "b" overlap in the file/);
    writeRawSafetensors(
      path.join(dir, 'model.safetensors'),
      { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } },
      new Uint8Array(12),
    );
    assert.equal(WeightIndex.open(dir).names().length, 2, 'adjacent tensors are fine');
  });

  test('the same tensor in two unindexed files', () => {
    const dir = modelFolder();
    writeSafetensors(path.join(dir, 'a.safetensors'), [f32('w', [1], [1])]);
    writeSafetensors(path.join(dir, 'b.safetensors'), [f32('w', [1], [2])]);
    throwsFicoco(() => WeightIndex.open(dir), 'weights', /"w" is stored in both a\.safetensors and b\.safetensors/);
  });
});

describe('float16ToFloat32', () => {
  test('normals, zeros, subnormals, infinities and NaN', () => {
    const cases: Array<[number, number]> = [
      [0x0000, 0],
      [0x3c00, 1],
      [0xc000, -2],
      [0x3555, 0.333251953125],
      [0x7bff, 65504],
      [0x0400, 2 ** -14], // smallest normal
      [0x0001, 2 ** -24], // smallest subnormal
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x8001, -(2 ** -24)],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    const converted = float16ToFloat32(Uint16Array.from(cases, ([half]) => half));
    cases.forEach(([half, expected], i) => assert.equal(converted[i], expected, `0x${half.toString(16)}`));
    const [negativeZero, nan, negativeNan] = float16ToFloat32(new Uint16Array([0x8000, 0x7e00, 0xfd01]));
    assert.ok(Object.is(negativeZero, -0));
    assert.ok(Number.isNaN(nan));
    assert.ok(Number.isNaN(negativeNan));
  });

  test('all 65536 values match the IEEE-754 definition', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const converted = float16ToFloat32(all);
    for (let half = 0; half < 65536; half++) {
      const sign = half & 0x8000 ? -1 : 1;
      const exponent = (half >> 10) & 0x1f;
      const mantissa = half & 0x3ff;
      const expected =
        exponent === 0
          ? sign * mantissa * 2 ** -24
          : exponent === 31
            ? mantissa
              ? NaN
              : sign * Infinity
            : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
      if (!Object.is(converted[half], expected))
        assert.fail(`0x${half.toString(16)}: ${converted[half]} ≠ ${expected}`);
    }
  });

  test('empty input', () => {
    assert.equal(float16ToFloat32(new Uint16Array(0)).length, 0);
  });
});

describe('bfloat16ToFloat32', () => {
  test('exact widening of bit patterns', () => {
    const converted = bfloat16ToFloat32(new Uint16Array([0x3f80, 0xc040, 0x7f80, 0xff80, 0x0001, 0x8000, 0x7fc0]));
    assert.deepEqual([...converted.slice(0, 5)], [1, -3, Infinity, -Infinity, 2 ** -133]);
    assert.ok(Object.is(converted[5], -0));
    assert.ok(Number.isNaN(converted[6]));
  });

  test('values rounded to nearest-even by the writer come back within half a bfloat16 ulp', () => {
    const originals = new Float32Array([1 / 3, Math.PI, -2.71828, 1e-20, 65504.5, 3e38, 1.00390625, 1.01171875]);
    const converted = bfloat16ToFloat32(float32ToBfloat16(originals));
    assert.equal(converted[0], 0.333984375); // 0x3eaaaaab rounds up to 0x3eab
    assert.equal(converted[1], 3.140625);
    assert.equal(converted[6], 1); // tie 1 + 2^-8 rounds to even (down)
    assert.equal(converted[7], 1.015625); // tie 1 + 3·2^-8 rounds to even (up)
    originals.forEach((original, i) => {
      const halfUlp = 2 ** (Math.floor(Math.log2(Math.abs(original))) - 8);
      assert.ok(Math.abs(converted[i]! - original) <= halfUlp, `${original} → ${converted[i]}`);
    });
  });

  test('through a file: BF16 tensor reads as the rounded float32 values', () => {
    const dir = modelFolder();
    const values = new Float32Array([0.1, -0.2, 1 / 3]);
    writeSafetensors(path.join(dir, 'model.safetensors'), [
      { name: 'w', dtype: 'BF16', shape: [3], data: bytesOf(float32ToBfloat16(values)) },
    ]);
    assert.deepEqual(WeightIndex.open(dir).readFloat32('w'), bfloat16ToFloat32(float32ToBfloat16(values)));
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
