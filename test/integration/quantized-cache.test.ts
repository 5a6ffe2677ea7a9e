import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import { float32ToFloat16 } from '../../src/engine/weights/dtype';
import { type LayerForms, type ProductRows, WeightQuantizer } from '../../src/engine/weights/quantizedCache';
import type { EncodeJob, WorkerReply } from '../../src/engine/weights/quantizeWorkers';
import { WeightIndex } from '../../src/engine/weights/safetensors';
import { bytesOf, writeSafetensors } from '../../src/engine/weights/safetensorsWriter';

const ROOT = path.join(__dirname, '..', '..');
const QUANTIZE_CHILD = path.join(ROOT, 'test', 'helpers', 'quantizeChild.ts');
const WORKER = path.join(ROOT, 'src', 'engine', 'weights', 'quantize-worker.ts');
/**
 * `bash` arguments that run the command after them under a file size limit of 4 KiB (ulimit -f counts KiB): a write
 * is cut short at 4,096 bytes, as the kernel cuts one past 2 GiB, and the next fails with EFBIG (Node ignores the
 * signal that comes with it).
 */
const WITH_4_KIB_FILE_LIMIT = ['-c', 'ulimit -f 4 && exec "$@"', 'bash'];

/** Deterministic weights in [−0.5, 0.5). */
function weights(count: number, seed: number): Float32Array {
  return Float32Array.from({ length: count }, () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31 - 0.5;
  });
}

/** Layers of several shapes and dtypes, as a model folder holds them; `rows` is how each is multiplied. */
const LAYERS: { name: string; shape: [number, number]; dtype: 'F32' | 'F16'; rows: ProductRows }[] = [
  { name: 'tower.fc1.weight', shape: [96, 48], dtype: 'F32', rows: 'many' },
  { name: 'layers.0.q_proj.weight', shape: [48, 48], dtype: 'F16', rows: 'any' },
  { name: 'layers.0.down_proj.weight', shape: [48, 200], dtype: 'F32', rows: 'any' },
  { name: 'layers.1.up_proj.weight', shape: [200, 48], dtype: 'F16', rows: 'any' },
  { name: 'lm_head.weight', shape: [130, 48], dtype: 'F32', rows: 'one' },
];

describe('the quantized cache, encoded by several processes', () => {
  const folders: string[] = [];
  after(() => folders.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

  function modelFolder(extra: Parameters<typeof writeSafetensors>[1] = []): WeightIndex {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-cache-'));
    folders.push(dir);
    const tensors = LAYERS.map(({ name, shape, dtype }, i) => {
      const values = weights(shape[0] * shape[1], i + 1);
      return { name, dtype, shape, data: bytesOf(dtype === 'F16' ? float32ToFloat16(values) : values) };
    });
    writeSafetensors(path.join(dir, 'model.safetensors'), [...tensors, ...extra]);
    return WeightIndex.open(dir);
  }

  /**
   * An int4 load of every 2-D tensor in a process of its own (test/helpers/quantizeChild.ts): as root, by default as
   * the unprivileged user nobody (65534 on Debian), since root writes anywhere.
   */
  function loadAsAnotherUser(source: string, cacheDir: string, another = true) {
    const asUser = another && process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const printed = execFileSync(process.execPath, ['--import', 'tsx', QUANTIZE_CHILD, source, cacheDir], {
      cwd: ROOT,
      encoding: 'utf8',
      ...asUser,
    });
    return JSON.parse(printed) as { file?: string; layers?: number; error?: string };
  }

  /** Stand-ins for partial caches at these paths, the `hourOld` ones last touched an hour ago. */
  function writePartials({ fresh, hourOld }: { fresh: string[]; hourOld: string[] }): void {
    for (const file of [...fresh, ...hourOld]) fs.writeFileSync(file, 'half a cache');
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const file of hourOld) fs.utimesSync(file, hourAgo, hourAgo);
  }

  /** An int4 quantizer of every layer, in one process. */
  function quantizerOf(index: WeightIndex): WeightQuantizer {
    const quantizer = new WeightQuantizer(index, 'int4', { onCpu: true, workers: 1 });
    for (const { name, rows } of LAYERS) quantizer.request(index.get(name), rows);
    return quantizer;
  }

  for (const mode of ['int8', 'int4'] as const) {
    test(`${mode}: one process or three write the same cache`, async () => {
      const caches = await Promise.all(
        [1, 3].map(async (workers) => {
          const index = modelFolder();
          const quantizer = new WeightQuantizer(index, mode, { onCpu: true, workers });
          for (const { name, rows } of LAYERS) quantizer.request(index.get(name), rows);
          const progress: number[] = [];
          const file = await quantizer.materialize((done) => progress.push(done));
          assert.deepEqual(progress, [1, 2, 3, 4, 5]);
          return fs.readFileSync(file);
        }),
      );
      assert.ok(caches[0].equals(caches[1]), 'the same bytes');
    });
  }

  test('two loads quantizing the same model at once each write a whole cache; one file is left', async () => {
    const quantizerOf = (index: WeightIndex) => {
      const quantizer = new WeightQuantizer(index, 'int4', { onCpu: true, workers: 2 });
      for (const { name, rows } of LAYERS) quantizer.request(index.get(name), rows);
      return quantizer;
    };
    const alone = fs.readFileSync(await quantizerOf(modelFolder()).materialize());
    const index = modelFolder();
    const [first, second] = await Promise.all([quantizerOf(index).materialize(), quantizerOf(index).materialize()]);
    assert.equal(first, second);
    assert.deepEqual(
      fs.readdirSync(path.dirname(first)).filter((file) => file.includes('.quantized')),
      [path.basename(first)],
    );
    assert.ok(fs.readFileSync(first).equals(alone), 'the same bytes as a cache written alone');
  });

  test('a partial from elsewhere is removed once untouched for 10 minutes; a fresh one stays', async () => {
    const index = modelFolder();
    const cache = await quantizerOf(index).materialize();
    fs.rmSync(cache);
    const [abandoned, inProgress] = [`${cache}.0a0a0a.partial`, `${cache}.1b1b1b.partial`];
    writePartials({ fresh: [inProgress], hourOld: [abandoned] });
    assert.equal(await quantizerOf(index).materialize(), cache);
    assert.ok(!fs.existsSync(abandoned), 'the abandoned partial is gone');
    assert.ok(fs.existsSync(inProgress), 'the partial being written stays');
  });

  test("this machine's partials: a stopped writer's is removed by any later load, a running one's stays", async () => {
    const index = modelFolder();
    const cache = await quantizerOf(index).materialize();
    const host = os.hostname().replace(/[^A-Za-z0-9-]/g, '-');
    // A process that has ended: its pid names a writer that is gone (a new process reusing it within the test is
    // not expected).
    const gone = spawnSync(process.execPath, ['-e', '']).pid!;
    const [stopped, running] = [
      `${cache}.${host}.${gone}.0a0a0a.partial`,
      `${cache}.${host}.${process.pid}.1b1b1b.partial`,
    ];
    writePartials({ fresh: [stopped], hourOld: [running] });
    // The cache is there: this load writes nothing, and still clears what a stopped load left.
    assert.equal(await quantizerOf(index).materialize(), cache);
    assert.ok(!fs.existsSync(stopped), "the stopped writer's partial is gone at once");
    assert.ok(fs.existsSync(running), "a running writer's partial stays, however long it has waited");
  });

  test("a load of other weights under the same names leaves a running load's partial; both finish", async () => {
    // Two snapshots of a Hugging Face model share its blobs, and so a cache folder: here two loads whose fingerprints
    // differ (one asks for a layer more), quantizing at once. Clearing the stale caches of one must not take the
    // partial the other is writing.
    const index = modelFolder();
    const loadOf = (layers: typeof LAYERS) => {
      const quantizer = new WeightQuantizer(index, 'int4', { onCpu: true, workers: 1 });
      for (const { name, rows } of layers) quantizer.request(index.get(name), rows);
      return quantizer.materialize();
    };
    const [all, fewer] = await Promise.all([loadOf(LAYERS), loadOf(LAYERS.slice(1))]);
    assert.notEqual(all, fewer);
    assert.ok(fs.existsSync(all) && fs.existsSync(fewer));
  });

  /** FiCoCo's own cache folder, which the other user the loads run as may write. */
  const ownCacheFolder = () => {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-own-cache-'));
    folders.push(cacheDir);
    fs.chmodSync(cacheDir, 0o777);
    return cacheDir;
  };

  test('a model folder it cannot write: the cache goes to its own folder, the model folder is left as it was', () => {
    const source = path.dirname(modelFolder().files[0]);
    const cacheDir = ownCacheFolder();
    fs.chmodSync(source, 0o555);
    const before = fs.readdirSync(source);
    const load = () => loadAsAnotherUser(source, cacheDir);
    const first = load();
    assert.equal(first.error, undefined);
    assert.equal(path.dirname(path.dirname(first.file!)), cacheDir);
    assert.equal(first.layers, LAYERS.length);
    assert.deepEqual(fs.readdirSync(source), before);
    const second = load();
    assert.deepEqual(second, { file: first.file, layers: 0 }, 'the second load reads the same cache');
    fs.chmodSync(source, 0o755);
  });

  test("a read-only folder with its cache and a stopped load's partial: the cache is read, the partial kept", () => {
    const source = path.dirname(modelFolder().files[0]);
    const cacheDir = ownCacheFolder();
    const written = loadAsAnotherUser(source, cacheDir, false);
    assert.equal(path.dirname(written.file!), source);
    const gone = spawnSync(process.execPath, ['-e', '']).pid!;
    const stopped = `${written.file}.${os.hostname().replace(/[^A-Za-z0-9-]/g, '-')}.${gone}.0a0a0a.partial`;
    fs.writeFileSync(stopped, 'half a cache');
    fs.chmodSync(source, 0o555);
    assert.deepEqual(loadAsAnotherUser(source, cacheDir), { file: written.file, layers: 0 });
    assert.ok(fs.existsSync(stopped), 'a folder it cannot write keeps the partial');
    fs.chmodSync(source, 0o755);
  });

  test('a read-only folder whose cache is damaged: a new cache goes to its own folder, the damaged one is left', () => {
    const source = path.dirname(modelFolder().files[0]);
    const cacheDir = ownCacheFolder();
    const written = loadAsAnotherUser(source, cacheDir, false);
    fs.truncateSync(written.file!, 100);
    fs.chmodSync(source, 0o555);
    const again = loadAsAnotherUser(source, cacheDir);
    assert.equal(again.error, undefined);
    assert.equal(path.dirname(path.dirname(again.file!)), cacheDir);
    assert.equal(again.layers, LAYERS.length);
    assert.equal(fs.statSync(written.file!).size, 100, 'the model folder is left as it was');
    fs.chmodSync(source, 0o755);
  });

  test("folders named as caches in the model folder are left; the cache goes to FiCoCo's own folder", async () => {
    const index = modelFolder();
    const source = path.dirname(index.files[0]);
    const cacheDir = ownCacheFolder();
    const quantizer = () => {
      const built = new WeightQuantizer(index, 'int4', { onCpu: true, workers: 1, cacheDir });
      for (const { name, rows } of LAYERS) built.request(index.get(name), rows);
      return built;
    };
    // A stale cache's name, as a folder with a file in it: removing it threw EISDIR out of the load.
    const stale = path.join(source, 'ficoco-int4-b128-zp-cpu-0000000000000000.quantized');
    fs.mkdirSync(stale);
    fs.writeFileSync(path.join(stale, 'kept'), 'not a cache');
    const beside = await quantizer().materialize();
    assert.equal(path.dirname(beside), source);
    assert.ok(fs.existsSync(path.join(stale, 'kept')), 'the folder is left');
    // This cache's own name, as a folder: renaming the written cache onto it threw EISDIR.
    fs.rmSync(beside);
    fs.mkdirSync(beside);
    const elsewhere = await quantizer().materialize();
    assert.equal(path.dirname(path.dirname(elsewhere)), cacheDir);
    assert.ok(fs.statSync(beside).isDirectory());
    assert.deepEqual(
      fs.readdirSync(source).filter((file) => file.endsWith('.partial')),
      [],
      'no partial left beside the weights',
    );
  });

  for (const [bad, shown] of [
    [NaN, 'NaN'],
    [-Infinity, '-Infinity'],
  ] as const)
    test(`a layer holding ${shown} fails the load with the tensor and where, not a block of zeros`, async () => {
      const values = weights(4 * 48, 9);
      values[50] = bad;
      const index = modelFolder([
        { name: 'layers.2.v_proj.weight', dtype: 'F32', shape: [4, 48], data: bytesOf(values) },
      ]);
      for (const mode of ['int8', 'int4'] as const) {
        const quantizer = new WeightQuantizer(index, mode, { onCpu: true, workers: 2 });
        for (const { name, rows } of LAYERS) quantizer.request(index.get(name), rows);
        quantizer.request(index.get('layers.2.v_proj.weight'), 'any');
        await assert.rejects(quantizer.materialize(), (error) => {
          assert.ok(error instanceof FicocoError && error.kind === 'weights', String(error));
          assert.match(error.message, new RegExp(`"layers\\.2\\.v_proj\\.weight" .* holds ${shown} at \\[1, 2\\]`));
          return true;
        });
      }
      const folder = path.dirname(index.files[0]);
      assert.deepEqual(
        fs.readdirSync(folder).filter((file) => file.includes('.quantized')),
        [],
      );
    });

  test('a layer that cannot be read fails the load with its reason and leaves no partial cache', async () => {
    const index = modelFolder([
      { name: 'layers.2.v_proj.weight', dtype: 'I32', shape: [4, 4], data: new Uint8Array(64) },
    ]);
    const quantizer = new WeightQuantizer(index, 'int4', { onCpu: true, workers: 2 });
    for (const { name, rows } of LAYERS) quantizer.request(index.get(name), rows);
    quantizer.request(index.get('layers.2.v_proj.weight'), 'any');
    await assert.rejects(
      quantizer.materialize(),
      (error) =>
        error instanceof FicocoError && error.kind === 'weights' && /is I32; only floating-point/.test(error.message),
    );
    const folder = path.dirname(index.files[0]);
    assert.deepEqual(
      fs.readdirSync(folder).filter((file) => file.includes('.quantized')),
      [],
      'no cache and no .partial left',
    );
  });

  test(
    'a write the file system cuts short is carried on, and fails the layer when the rest cannot go: never left short',
    { skip: process.platform === 'win32' && 'the file size limit is set with POSIX ulimit' },
    async () => {
      const index = modelFolder();
      // In channels, a [48, 200] layer's codes are one tensor of 9,600 bytes.
      const weight = index.get('layers.0.down_proj.weight');
      const file = path.join(path.dirname(index.files[0]), 'cut.partial');
      fs.writeFileSync(file, '');
      const worker = spawn('bash', [...WITH_4_KIB_FILE_LIMIT, process.execPath, '--import', 'tsx', WORKER], {
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      try {
        const reply = new Promise<WorkerReply>((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('exit', (code, signal) => reject(new Error(`the worker stopped (${signal ?? code})`)));
        });
        const job: EncodeJob<LayerForms> = { weight, forms: { channels: true }, file, offsets: { q: 0 } };
        worker.send(job);
        assert.deepEqual(await reply, { writeFailed: { message: 'EFBIG: file too large, write', code: 'EFBIG' } });
      } finally {
        worker.kill();
      }
    },
  );

  test(
    "a load whose layers' writes the file system refuses says what to do, as a refused header does",
    { skip: process.platform === 'win32' && 'the file size limit is set with POSIX ulimit' },
    () => {
      const folder = path.dirname(modelFolder().files[0]);
      // The header (about 1.5 KB) fits under the limit; each layer's blocks start past it.
      const printed = execFileSync(
        'bash',
        [...WITH_4_KIB_FILE_LIMIT, process.execPath, '--import', 'tsx', QUANTIZE_CHILD, folder, folder],
        { cwd: ROOT, encoding: 'utf8' },
      );
      assert.deepEqual(JSON.parse(printed), {
        error:
          `FicocoError: The int4 weights cannot be cached in ${folder} (EFBIG); free space or allow writing there, ` +
          'or turn weight quantization off.',
      });
      assert.deepEqual(fs.readdirSync(folder), ['model.safetensors']);
    },
  );

  test('a partial cache that cannot be removed after a failure leaves the failure reported, not the removal', async () => {
    const index = modelFolder([
      { name: 'layers.2.v_proj.weight', dtype: 'I32', shape: [4, 4], data: new Uint8Array(64) },
    ]);
    const folder = path.dirname(index.files[0]);
    // One process, layer by layer: the first layer is written, the second cannot be read.
    const quantizer = new WeightQuantizer(index, 'int4', { onCpu: true, workers: 1 });
    quantizer.request(index.get(LAYERS[0].name), LAYERS[0].rows);
    quantizer.request(index.get('layers.2.v_proj.weight'), 'any');
    // Once the first layer is in, the partial becomes a folder with a file in it, which removing a file cannot
    // remove (as Windows refuses to remove a file another process still has open).
    const turnPartialIntoFolder = () => {
      const [partial] = fs.readdirSync(folder).filter((name) => name.endsWith('.partial'));
      fs.rmSync(path.join(folder, partial));
      fs.mkdirSync(path.join(folder, partial));
      fs.writeFileSync(path.join(folder, partial, 'kept'), '');
    };
    await assert.rejects(
      quantizer.materialize((done) => {
        if (done === 1) turnPartialIntoFolder();
      }),
      (error) =>
        error instanceof FicocoError && error.kind === 'weights' && /is I32; only floating-point/.test(error.message),
    );
  });
});
