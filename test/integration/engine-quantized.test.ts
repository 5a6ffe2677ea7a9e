import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LlavaEngine } from '../../src/engine/engine';
import { screenshotQuestionBytes } from '../../src/engine/loadChecks';
import { flopsArchOf } from '../../src/engine/models/flopsArch';
import { parseModelConfig } from '../../src/engine/models/registry';
import { SessionFactory } from '../../src/engine/runtime/provider';
import { TowerRunner } from '../../src/engine/runtime/towerRunner';
import { cpuWeightBytes } from '../../src/engine/weights/footprint';
import { WeightQuantizer } from '../../src/engine/weights/quantizedCache';
import { referencePixels } from '../helpers/referencePixels';
import {
  INT4_BLOCK_SIZE,
  dequantizeBlocks,
  dequantizeChannels,
  quantizeBlocks,
  quantizeChannels,
} from '../../src/engine/weights/quantize';
import { WeightIndex } from '../../src/engine/weights/safetensors';
import { bytesOf, writeSafetensors } from '../../src/engine/weights/safetensorsWriter';
import { maxAbsDiff } from '../helpers/assertions';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'tiny-llava-llama');
/** hidden 48 (int4: a padded block of 128), intermediate 96; the layers' linear layers and the head */
const DECODER_LINEAR =
  /^language_model\.(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)|lm_head)\.weight$/;
/** the vision tower's linear layers, which both modes quantize in int8 channels on the CPU */
const TOWER_LINEAR =
  /^vision_tower\.vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$/;

/**
 * A copy of the fixture model; with `mode`, the linear layers it quantizes replaced by their quantize→dequantize round
 * trip.
 */
function copyFixture(mode?: 'int8' | 'int4'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-quantized-'));
  for (const file of fs.readdirSync(FIXTURE)) fs.copyFileSync(path.join(FIXTURE, file), path.join(dir, file));
  if (mode) {
    const index = WeightIndex.open(dir);
    const tensors = index.names().map((name) => {
      const location = index.get(name);
      let values = index.readFloat32(name);
      const [rows, cols] = location.shape;
      const inChannels = TOWER_LINEAR.test(name) || (mode === 'int8' && DECODER_LINEAR.test(name));
      if (inChannels) values = dequantizeChannels(quantizeChannels(values, rows, cols));
      else if (DECODER_LINEAR.test(name)) values = dequantizeBlocks(quantizeBlocks(values, rows, cols));
      return { name, dtype: 'F32' as const, shape: location.shape, data: new Uint8Array(bytesOf(values)) };
    });
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  }
  return dir;
}

describe('quantization of the decoder and, on the CPU, the vision tower (cached beside the weights)', () => {
  const reference = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'reference.json'), 'utf8')) as {
    cases: { input_ids: number[]; image: string }[];
  };
  const pixels = referencePixels(
    WeightIndex.openFile(path.join(FIXTURE, 'reference.safetensors')),
    0,
    path.join(FIXTURE, reference.cases[0].image),
  );
  const prefillLogits = async (engine: LlavaEngine) =>
    (await engine.generate(reference.cases[0].input_ids, [pixels], { maxNewTokens: 1, stopTokenIds: [] }))
      .prefillLogits;
  const folders: string[] = [];
  const errors = new Map<string, number>();
  let full: Float32Array;
  before(async () => {
    const engine = await LlavaEngine.load(FIXTURE);
    full = await prefillLogits(engine);
    await engine.dispose();
  });
  after(() => folders.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

  for (const mode of ['int8', 'int4'] as const) {
    test(`${mode}: ONNX Runtime computes what the dequantized weights give, and the cache is written once`, async () => {
      const dir = copyFixture();
      const roundTrip = copyFixture(mode);
      folders.push(dir, roundTrip);
      const quantized = await LlavaEngine.load(dir, { quantization: mode });
      const logits = await prefillLogits(quantized);
      await quantized.dispose();
      const dequantized = await LlavaEngine.load(roundTrip);
      const expected = await prefillLogits(dequantized);
      await dequantized.dispose();
      // Same weights two ways; what differs is that both products quantize activations to int8 (int4: per block of 128,
      // 0.33 with AVX-512 VNNI; int8: per token, 0.21): a few tenths on logits that reach ±9, where a wrong
      // layout scrambles them entirely (int4's own rounding alone moves them by 3.5).
      const kernelError = maxAbsDiff(logits, expected);
      const peak = Math.max(...expected.map(Math.abs));
      assert.ok(
        kernelError < 0.06 * peak,
        `quantized product vs dequantized weights: ${kernelError} (logits reach ${peak})`,
      );
      assert.ok(maxAbsDiff(expected, full) > 0, 'the round trip changed the weights');
      errors.set(mode, maxAbsDiff(logits, full));

      const caches = fs.readdirSync(dir).filter((file) => file.endsWith('.quantized'));
      assert.equal(caches.length, 1);
      const layout = mode === 'int4' ? `b${INT4_BLOCK_SIZE}-zp` : 'channels';
      assert.match(caches[0], new RegExp(`^ficoco-${mode}-${layout}-cpu-[0-9a-f]{16}\\.quantized$`));
      // Each layer in the forms its row counts run fastest in on the CPU: the tower's passes in int8 channels
      // (MatMulInteger) in both modes; with int8 the head's one row in 8-bit blocks (MatMulNBits) and a decoder layer's
      // prompts and steps in both forms; with int4 the decoder in 4-bit blocks.
      const cached = new Set(WeightIndex.openFile(path.join(dir, caches[0])).names());
      const forms = (weight: string) => ['q', 'blocks'].filter((suffix) => cached.has(`${weight}.${suffix}`));
      assert.deepEqual(forms('vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight'), ['q']);
      assert.deepEqual(forms('language_model.lm_head.weight'), ['blocks']);
      assert.deepEqual(
        forms('language_model.model.layers.0.mlp.down_proj.weight'),
        mode === 'int8' ? ['q', 'blocks'] : ['blocks'],
      );
      const written = fs.statSync(path.join(dir, caches[0])).mtimeMs;
      const again = await LlavaEngine.load(dir, { quantization: mode });
      assert.ok(maxAbsDiff(await prefillLogits(again), logits) === 0, 'the cached weights give the same logits');
      await again.dispose();
      assert.equal(
        fs.statSync(path.join(dir, caches[0])).mtimeMs,
        written,
        'the second load reads the cache instead of rewriting it',
      );
    });
  }

  test('int8 decode steps (one row, in 8-bit blocks) pick what the dequantized weights pick where it is clear', async () => {
    const dir = copyFixture();
    const roundTrip = copyFixture('int8');
    folders.push(dir, roundTrip);
    const quantized = await LlavaEngine.load(dir, { quantization: 'int8' });
    const dequantized = await LlavaEngine.load(roundTrip);
    let checked = 0;
    for (const prompt of [
      [1, 5, 9, 20, 33, 7, 11],
      [3, 8, 2, 40, 41, 42],
      [1, 60, 61, 17, 90],
      [2, 100, 4, 4, 77, 23, 50],
      [1, 30, 31, 32, 33],
    ]) {
      const { tokenIds } = await quantized.generate(prompt, [], { maxNewTokens: 12, stopTokenIds: [] });
      // Each step's token against the float model's prefill of everything before it (the same weights, a different
      // path): a step whose top two logits are within 1 may go either way with activations quantized (~0.2 here).
      for (let step = 1; step < tokenIds.length; step++) {
        const before = [...prompt, ...tokenIds.slice(0, step)];
        const logits = (await dequantized.generate(before, [], { maxNewTokens: 1, stopTokenIds: [] })).prefillLogits;
        const ranked = [...logits.keys()].sort((a, b) => logits[b] - logits[a]);
        if (logits[ranked[0]] - logits[ranked[1]] < 1) continue;
        assert.equal(tokenIds[step], ranked[0], `prompt ${prompt.join()}, step ${step}`);
        checked++;
      }
    }
    await quantized.dispose();
    await dequantized.dispose();
    assert.ok(checked >= 8, `only ${checked} steps had a clear choice`);
  });

  test('int8 where memory is short: each decoder layer held once, read from the same cache', async () => {
    const dir = copyFixture();
    folders.push(dir);
    const weights = WeightIndex.open(dir);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const quantizerFor = (oneForm: boolean) => {
      const quantizer = new WeightQuantizer(weights, 'int8', { onCpu: true, oneForm, workers: 1 });
      const towers = parseModelConfig(config, 'config.json').build(weights, quantizer);
      return { quantizer, towers, bytes: cpuWeightBytes(weights, quantizer) };
    };
    const [both, one] = [quantizerFor(false), quantizerFor(true)];
    // The decoder's 8-bit blocks go: a layer is 1 byte a weight instead of 2.
    assert.ok(one.bytes < both.bytes, `${one.bytes} against ${both.bytes}`);
    assert.ok(one.quantizer.holdsOneForm && !both.quantizer.holdsOneForm);
    const cache = await both.quantizer.materialize();
    const written = fs.statSync(cache).mtimeMs;
    assert.equal(await one.quantizer.materialize(), cache, 'the same file');
    assert.equal(fs.statSync(cache).mtimeMs, written, 'read, not written again');

    const roomy = await LlavaEngine.load(dir, { quantization: 'int8' });
    // Enough for one form and the question's attention and KV cache, not for both forms.
    const short = await LlavaEngine.load(dir, { quantization: 'int8', availableMemory: () => both.bytes - 1 });
    assert.doesNotMatch(roomy.quantizedWeights!, /memory/);
    assert.match(short.quantizedWeights!, /^int8 \(decoder and vision tower; .*as memory was short.*\)$/);
    // A container's limit below both forms counts too, however much its host has free; and both forms that fit but
    // leave no room for a question about a screenshot are not worth it.
    for (const memory of [{ totalMemory: () => both.bytes - 1 }, { availableMemory: () => both.bytes + 1 }]) {
      const limited = await LlavaEngine.load(dir, { quantization: 'int8', ...memory });
      assert.equal(limited.quantizedWeights, short.quantizedWeights, Object.keys(memory)[0]);
      await limited.dispose();
    }
    // With that room exactly both forms are kept, and a byte less is too little.
    const room = both.bytes + screenshotQuestionBytes(flopsArchOf(parseModelConfig(config, 'config.json').config, 'x'));
    for (const [available, expected] of [
      [room, roomy.quantizedWeights],
      [room - 1, short.quantizedWeights],
    ] as const) {
      const engine = await LlavaEngine.load(dir, { quantization: 'int8', availableMemory: () => available });
      assert.equal(engine.quantizedWeights, expected, `${available} bytes available`);
      await engine.dispose();
    }
    assert.equal(maxAbsDiff(await prefillLogits(short), await prefillLogits(roomy)), 0, 'prompts multiply as before');
    assert.equal(fs.statSync(cache).mtimeMs, written, 'both loads read the cache');
    // A step now runs the prompts' product, one token's row quantized alone as in a prompt: it picks what a prompt of
    // everything before it picks (only the attention's summation order differs).
    const prompt = [1, 5, 9, 20, 33, 7, 11];
    // (Two forms fail this on the fixture: their steps quantize activations per block.)
    const { tokenIds } = await short.generate(prompt, [], { maxNewTokens: 10, stopTokenIds: [] });
    let checked = 0;
    for (let step = 1; step < tokenIds.length; step++) {
      const before = [...prompt, ...tokenIds.slice(0, step)];
      const logits = (await short.generate(before, [], { maxNewTokens: 1, stopTokenIds: [] })).prefillLogits;
      const ranked = [...logits.keys()].sort((a, b) => logits[b] - logits[a]);
      if (logits[ranked[0]] - logits[ranked[1]] < 1e-3) continue;
      assert.equal(tokenIds[step], ranked[0], `step ${step}`);
      checked++;
    }
    assert.ok(checked >= 7, `only ${checked} steps had a clear choice`);
    await Promise.all([roomy.dispose(), short.dispose()]);
  });

  test('int8 for a GPU provider: the decoder in 8-bit blocks alone, the tower as stored; its graphs open', async () => {
    // No GPU here, and a provider that cannot load settles on the CPU's layout (probeProviders): build the GPU's.
    const dir = copyFixture();
    folders.push(dir);
    const weights = WeightIndex.open(dir);
    const quantizer = new WeightQuantizer(weights, 'int8', { onCpu: false });
    const towers = parseModelConfig(
      JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')),
      'config.json',
    ).build(weights, quantizer);
    const cache = await quantizer.materialize();
    const names = WeightIndex.openFile(cache).names();
    assert.ok(!names.some((name) => name.startsWith('vision_tower.')), 'the tower stays as stored');
    assert.ok(!names.some((name) => name.endsWith('.q')), 'no MatMulInteger weights: GPU providers lack its kernel');
    assert.ok(names.includes('language_model.model.layers.0.mlp.down_proj.weight.blocks'));
    const factory = new SessionFactory({ weightsFolder: dir, candidates: ['cpu'], threads: 1 });
    for (const tower of [towers.vision, towers.decoder]) {
      const runner = new TowerRunner(tower, factory, tower === towers.decoder);
      assert.ok((await runner.segments(new Map())).length > 0);
      await runner.release();
    }
  });

  test("the CPU's cache and a GPU provider's stay side by side: switching back reads its own, not made again", async () => {
    const dir = copyFixture();
    folders.push(dir);
    const legacy = path.join(dir, 'ficoco-int8-channels-0123456789abcdef.quantized');
    fs.writeFileSync(legacy, 'a cache named before caches said their placement');
    const weights = WeightIndex.open(dir);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const materialize = (onCpu: boolean) => {
      const quantizer = new WeightQuantizer(weights, 'int8', { onCpu, workers: 1 });
      parseModelConfig(config, 'config.json').build(weights, quantizer);
      return quantizer.materialize();
    };
    const gpu = await materialize(false);
    const cpu = await materialize(true);
    assert.notEqual(cpu, gpu);
    assert.ok(!fs.existsSync(legacy), 'the unplaced cache is stale');
    const written = fs.statSync(gpu).mtimeMs;
    assert.equal(await materialize(false), gpu);
    assert.equal(fs.statSync(gpu).mtimeMs, written, 'read, not written again');
    assert.deepEqual(
      fs
        .readdirSync(dir)
        .filter((file) => file.endsWith('.quantized'))
        .sort(),
      [path.basename(cpu), path.basename(gpu)].sort(),
    );
  });

  test('int4 strays further from the float weights than int8 (random 48-wide fixture weights, so both are visible)', () => {
    assert.ok(errors.get('int8')! < errors.get('int4')!, JSON.stringify([...errors]));
  });

  test('a changed checkpoint is quantized again and the stale caches removed, older block sizes too', async () => {
    const dir = copyFixture();
    folders.push(dir);
    const older = path.join(dir, 'ficoco-int4-b32-0123456789abcdef.quantized');
    fs.writeFileSync(older, 'a cache in a layout this version no longer reads');
    await (await LlavaEngine.load(dir, { quantization: 'int4' })).dispose();
    assert.ok(!fs.existsSync(older), 'the older block size is gone');
    const [first] = fs.readdirSync(dir).filter((file) => file.endsWith('.quantized'));
    const weights = path.join(dir, 'model.safetensors');
    fs.utimesSync(weights, new Date(), new Date(Date.now() + 60_000));
    await (await LlavaEngine.load(dir, { quantization: 'int4' })).dispose();
    const after = fs.readdirSync(dir).filter((file) => file.endsWith('.quantized'));
    assert.equal(after.length, 1);
    assert.notEqual(after[0], first);
  });

  test('a damaged cache is made again: cut short, or holding a tensor in another shape under its name', async () => {
    const dir = copyFixture();
    folders.push(dir);
    const answer = async () => {
      const engine = await LlavaEngine.load(dir, { quantization: 'int4' });
      const logits = await prefillLogits(engine);
      await engine.dispose();
      return logits;
    };
    const logits = await answer();
    const [name] = fs.readdirSync(dir).filter((file) => file.endsWith('.quantized'));
    const cache = path.join(dir, name);
    const size = fs.statSync(cache).size;
    fs.truncateSync(cache, Math.floor(size / 2));
    assert.equal(maxAbsDiff(await answer(), logits), 0, 'the cache cut short');
    assert.equal(fs.statSync(cache).size, size);
    // The same bytes, one tensor's shape changed: a block's scales as [out, blocks] instead of [out · blocks].
    const index = WeightIndex.openFile(cache);
    const bytes = fs.readFileSync(cache);
    const tensors = index.names().map((tensor) => {
      const { dtype, shape, byteOffset, byteLength } = index.get(tensor);
      const reshaped = tensor.endsWith('lm_head.weight.block_scales') ? [shape[0] / 2, 2] : shape;
      return { name: tensor, dtype, shape: reshaped, data: bytes.subarray(byteOffset, byteOffset + byteLength) };
    });
    writeSafetensors(cache, tensors);
    assert.equal(maxAbsDiff(await answer(), logits), 0, 'a tensor in another shape');
    assert.deepEqual(WeightIndex.openFile(cache).get('language_model.lm_head.weight.block_scales').shape.length, 1);
  });

  test(
    'a model in the Hugging Face cache keeps its cache folders as they were: its quantized weights go to ' +
      'a folder of our own, read beside the blobs',
    async () => {
      const hfCache = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-hf-cache-'));
      const ours = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-quantized-cache-'));
      const plain = copyFixture();
      folders.push(hfCache, ours, plain);
      // huggingface_hub's layout: the files as blobs named by their hash, a snapshot of links to them.
      const repo = path.join(hfCache, 'models--ficoco--tiny-llava-llama');
      const snapshot = path.join(repo, 'snapshots', 'd'.repeat(40));
      fs.mkdirSync(path.join(repo, 'blobs'), { recursive: true });
      fs.mkdirSync(snapshot, { recursive: true });
      for (const file of fs.readdirSync(FIXTURE).filter((name) => !name.startsWith('reference'))) {
        const blob = path.join(
          repo,
          'blobs',
          createHash('sha256')
            .update(fs.readFileSync(path.join(FIXTURE, file)))
            .digest('hex'),
        );
        fs.copyFileSync(path.join(FIXTURE, file), blob);
        fs.symlinkSync(path.relative(snapshot, blob), path.join(snapshot, file));
      }
      const listing = (folder: string) => fs.readdirSync(folder).sort();
      const [blobs, links] = [listing(path.join(repo, 'blobs')), listing(snapshot)];

      const fromCache = await LlavaEngine.load(snapshot, { quantization: 'int8', quantizedCacheDir: ours });
      const logits = await prefillLogits(fromCache);
      await fromCache.dispose();
      assert.deepEqual(listing(path.join(repo, 'blobs')), blobs, 'nothing was written into blobs/');
      assert.deepEqual(listing(snapshot), links, 'nor into the snapshot');
      const [folder] = listing(ours);
      assert.match(listing(path.join(ours, folder)).join(), /^ficoco-int8-channels-cpu-[0-9a-f]{16}\.quantized$/);

      const besideWeights = await LlavaEngine.load(plain, { quantization: 'int8' });
      assert.equal(maxAbsDiff(await prefillLogits(besideWeights), logits), 0, 'the same quantized model either way');
      await besideWeights.dispose();
    },
  );
});
