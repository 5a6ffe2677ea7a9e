import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { reduceCommand } from '../../src/cli/reduce';
import { FicocoError } from '../../src/common/errors';
import { WeightIndex } from '../../src/engine/weights/safetensors';
import { bytesOf, writeSafetensors } from '../../src/engine/weights/safetensorsWriter';
import { seededRandom } from '../../src/common/random';
import { runStep } from '../../src/reduction/paradigm';
import { planReduction } from '../../src/reduction/registry';
import { SiteView } from '../../src/reduction/tokenState';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();

const TOKENS = 17;
const WIDTH = 8;

/** [CLS] + a 4×4 grid of patches with random states and attention logits, as a vision site would save them. */
function savedSite(dir: string) {
  const random = seededRandom(3);
  const hidden = Float32Array.from({ length: TOKENS * WIDTH }, () => random() * 2 - 1);
  const logits = Float32Array.from({ length: TOKENS * TOKENS }, () => random() * 4 - 2);
  const file = path.join(dir, 'site.safetensors');
  writeSafetensors(file, [
    { name: 'hidden_states', dtype: 'F32', shape: [TOKENS, WIDTH], data: bytesOf(hidden) },
    { name: 'attention_logits', dtype: 'F32', shape: [TOKENS, TOKENS], data: bytesOf(logits) },
    { name: 'visual_span', dtype: 'I64', shape: [2], data: bytesOf(BigInt64Array.of(1n, 16n)) },
    { name: 'grid', dtype: 'I32', shape: [2], data: bytesOf(Int32Array.of(4, 4)) },
    { name: 'class_token', dtype: 'I64', shape: [1], data: bytesOf(BigInt64Array.of(1n)) },
  ]);
  return { file, hidden, logits };
}

test('ficoco reduce writes what the library computes, with its bookkeeping', async () => {
  const dir = temporaryFolder('ficoco-reduce-');
  const { file, hidden, logits } = savedSite(dir);
  const output = path.join(dir, 'out.safetensors');
  assert.equal(
    await reduceCommand([
      '--method',
      'ficoco-v',
      '--budget',
      '4',
      '--input',
      file,
      '--output',
      output,
      '--vision-layers',
      '2',
    ]),
    0,
  );

  const out = WeightIndex.openFile(output);
  const kept = out.readIntegers('kept_indices');
  assert.equal(kept.length, 1 + 4);
  assert.equal(kept[0], 0, '[CLS] stays first');
  assert.deepEqual(
    kept,
    [...kept].sort((a, b) => a - b),
    'kept tokens stay in order',
  );
  const sizes = out.readFloat32('sizes');
  assert.ok(Math.abs(sizes.slice(1).reduce((a, b) => a + b, 0) - 16) < 1e-4, 'merged sizes add up to the 16 patches');
  assert.ok(
    out.readIntegers('patch_owner').every((owner) => owner >= 1 && owner <= 4),
    'every patch is held by a kept patch token',
  );
  assert.deepEqual(out.readIntegers('visual_span'), [1, 4]);

  const sources = out.readIntegers('step0.sources');
  const offsets = out.readIntegers('step0.receiver_offsets');
  const receivers = out.readIntegers('step0.receivers');
  const weights = out.readFloat32('step0.weights');
  assert.equal(sources.length, 12);
  for (let k = 0; k < sources.length; k++) {
    const share = weights.slice(offsets[k], offsets[k + 1]).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(share - 1) < 1e-5, `weights of source ${sources[k]} sum to 1`);
    for (let e = offsets[k]; e < offsets[k + 1]; e++)
      assert.ok(kept.includes(receivers[e]), 'receivers are kept tokens');
  }

  // The same step run directly on the same view gives the same tokens.
  const plan = planReduction(
    'ficoco-v',
    { tokens: 4 },
    { visionLayers: 2, textLayers: 32, visualTokens: 16, grid: { rows: 4, cols: 4 }, hasClassToken: true },
  );
  const view: SiteView = {
    hidden,
    count: TOKENS,
    width: WIDTH,
    sizes: new Float32Array(TOKENS).fill(1),
    positions: Int32Array.from({ length: TOKENS }, (_, i) => i),
    spans: [
      {
        start: 1,
        count: 16,
        grid: { rows: 4, cols: 4 },
        patchOwner: Int32Array.from({ length: 16 }, (_, p) => p + 1),
        tokenPatch: Int32Array.from({ length: 16 }, (_, p) => p),
      },
    ],
    site: plan.steps[0].site,
    attention: logits,
    keyCount: TOKENS,
    hasClassToken: true,
  };
  const direct = runStep(plan.steps[0], view);
  assert.deepEqual(Array.from(out.readFloat32('hidden_states')), Array.from(direct.hidden));
});

test("ficoco reduce marks a token the method created (EViT's fused token) as continuing no input token", async () => {
  const dir = temporaryFolder('ficoco-reduce-');
  const { file } = savedSite(dir);
  const output = path.join(dir, 'out.safetensors');
  const args = ['--method', 'evit', '--budget', '8', '--input', file, '--output', output];
  assert.equal(await reduceCommand([...args, '--param', 'stages=1', '--vision-layers', '4']), 0);
  const out = WeightIndex.openFile(output);
  const kept = out.readIntegers('kept_indices');
  const tokenPatch = out.readIntegers('token_patch');
  assert.equal(kept.length, 1 + 8);
  // The fused token goes last in the span, made of the 9 least attended patches.
  assert.equal(tokenPatch[7], -1);
  assert.equal(out.readFloat32('sizes')[8], 9);
  assert.equal(kept[8], -1, 'the fused token continues no input token');
  const continued = kept.filter((index) => index >= 0);
  assert.equal(new Set(continued).size, continued.length, 'no input token is continued twice');
});

test('ficoco reduce names a missing input tensor', async () => {
  const dir = temporaryFolder('ficoco-reduce-');
  const file = path.join(dir, 'bare.safetensors');
  writeSafetensors(file, [
    { name: 'hidden_states', dtype: 'F32', shape: [TOKENS, WIDTH], data: bytesOf(new Float32Array(TOKENS * WIDTH)) },
    { name: 'visual_span', dtype: 'I64', shape: [2], data: bytesOf(BigInt64Array.of(1n, 16n)) },
  ]);
  await assert.rejects(
    reduceCommand([
      '--method',
      'ficoco-v',
      '--budget',
      '4',
      '--input',
      file,
      '--output',
      path.join(dir, 'o.safetensors'),
      '--vision-layers',
      '2',
    ]),
    /needs attention_logits \[17, 17\]/,
  );
});

test('ficoco reduce names a missing hidden_states or visual_span as its input, not as model weights', async () => {
  const dir = temporaryFolder('ficoco-reduce-');
  const hidden = {
    name: 'hidden_states',
    dtype: 'F32' as const,
    shape: [TOKENS, WIDTH],
    data: bytesOf(new Float32Array(TOKENS * WIDTH)),
  };
  const span = { name: 'visual_span', dtype: 'I64' as const, shape: [2], data: bytesOf(BigInt64Array.of(1n, 16n)) };
  for (const [tensor, missing] of [
    [span, 'hidden_states'],
    [hidden, 'visual_span'],
  ] as const) {
    const file = path.join(dir, `without-${missing}.safetensors`);
    writeSafetensors(file, [tensor]);
    await assert.rejects(
      reduceCommand([
        '--method',
        'divprune',
        '--budget',
        '4',
        '--input',
        file,
        '--output',
        path.join(dir, 'o.safetensors'),
      ]),
      (error: Error) => {
        assert.ok(error instanceof FicocoError, String(error));
        assert.equal(
          error.message,
          `${file} has no ${missing} tensor; ficoco reduce reads hidden_states [N, D] and visual_span [2] (see \`ficoco reduce --help\`).`,
        );
        return true;
      },
    );
  }
});

test('ficoco reduce checks where --output goes before reducing: not a folder, in a folder that exists', async () => {
  const dir = temporaryFolder('ficoco-reduce-');
  const { file } = savedSite(dir);
  const reduce = (output: string) =>
    reduceCommand(['--method', 'divprune', '--budget', '4', '--input', file, '--output', output]);
  await assert.rejects(reduce(dir), (error: Error) => {
    assert.ok(error instanceof FicocoError, String(error));
    assert.match(error.message, /^--output .* is a folder; give the file to write\.$/);
    return true;
  });
  await assert.rejects(reduce(path.join(dir, 'no-such-folder', 'out.safetensors')), (error: Error) => {
    assert.ok(error instanceof FicocoError, String(error));
    assert.match(error.message, /no-such-folder is not an existing folder\.$/);
    return true;
  });
});
