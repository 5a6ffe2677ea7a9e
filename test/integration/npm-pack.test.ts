/**
 * The tarball `npm pack` makes of the repository (.npmignore chooses its files, `prepack` builds dist/): it holds the
 * library, its types, the `ficoco` bin, every file the bundles load beside them and the built-in model, and nothing
 * else; its "dependencies" are what those files load or import from node_modules. It is packed from the build
 * `npm test` has already made (--ignore-scripts), then unpacked and run.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { isBuiltin } from 'node:module';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as esbuild from 'esbuild';
import * as ts from 'typescript';
import { METHODS } from '../../src/index';
import { temporaryFolders } from '../helpers/tempFolders';

const execFileAsync = promisify(execFile);
const ROOT = path.join(__dirname, '..', '..');
const DIST = path.join(ROOT, 'dist');
const BUILTIN_MODEL = path.join('models', 'tiny-llava-screens');
/** Bundles only the extension loads: VS Code runs them from the VSIX, never from this package. */
const EXTENSION_ONLY = ['extension.js', 'webview.js', 'webview.css'];
/** What the bundles leave to node_modules (scripts/build.mjs "external", besides the extension's vscode). */
const EXTERNAL = 'onnxruntime-node';
const IMAGES = ['baseline.jpg', 'lossy.webp'].map((name) => path.join(ROOT, 'test', 'fixtures', 'preprocess', name));
const RUN = { timeout: 120_000 };

interface Manifest {
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  dependencies: Record<string, string>;
}

const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Manifest;
const built = fs.existsSync(path.join(DIST, 'index.js')) && fs.existsSync(path.join(DIST, 'types', 'index.d.ts'));

/** Every file under `dir`, as paths relative to `base` with forward slashes, as npm lists them. */
function filesUnder(dir: string, base: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(base, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
}

/** The files the package must hold, from what the build wrote and what the built-in model folder has. */
function expectedFiles(): string[] {
  const bundles = fs
    .readdirSync(DIST, { withFileTypes: true })
    .filter((entry) => entry.isFile() && !entry.name.endsWith('.map') && !EXTENSION_ONLY.includes(entry.name))
    .map((entry) => `dist/${entry.name}`);
  // A clone's model folder may also hold the quantized caches answers leave beside the weights (and their partials).
  const model = filesUnder(path.join(ROOT, BUILTIN_MODEL), ROOT).filter((file) => !file.includes('.quantized'));
  return ['LICENSE', 'README.md', 'package.json', ...bundles, ...filesUnder(path.join(DIST, 'types'), ROOT), ...model];
}

/** The package a bare module specifier names (`@scope/name` or `name`), without the path inside it. */
function packageName(specifier: string): string {
  const [first, second] = specifier.split('/');
  return first.startsWith('@') ? `${first}/${second}` : first;
}

/** Packages the bundles require() at run time: esbuild parses them, so code generators' require strings don't count. */
async function packagesRequiredBy(bundles: string[]): Promise<string[]> {
  const { metafile } = await esbuild.build({
    entryPoints: bundles,
    bundle: true,
    packages: 'external',
    platform: 'node',
    write: false,
    outdir: 'unused', // esbuild wants one for several entry points; nothing is written
    metafile: true,
    logLevel: 'silent',
  });
  return Object.values(metafile.inputs)
    .flatMap((input) => input.imports)
    .filter((record) => record.external && !isBuiltin(record.path))
    .map((record) => packageName(record.path));
}

/** Packages the declarations import types from: a consumer's type check needs them installed. */
function packagesImportedBy(declarations: string[]): string[] {
  return declarations
    .flatMap((file) => ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true).importedFiles)
    .map((imported) => imported.fileName)
    .filter((specifier) => !specifier.startsWith('.') && !isBuiltin(specifier))
    .map(packageName);
}

describe('npm pack', { skip: !built && 'needs the library built: run npm run build' }, () => {
  const temporaryFolder = temporaryFolders();
  const packed = temporaryFolder('ficoco-npm-pack-');
  // npm install asks the registry for every dependency's metadata, even with a warm cache: the test unpacks the
  // package where npm would put it instead, beside the one dependency its bundles load from node_modules.
  const consumer = temporaryFolder('ficoco-npm-pack-consumer-');
  const installed = path.join(consumer, 'node_modules', 'ficoco-vision');
  const node = (args: string[]) => execFileAsync(process.execPath, args, { cwd: consumer, ...RUN });

  before(async () => {
    const pack = ['pack', '--json', '--ignore-scripts', '--pack-destination', packed];
    const { stdout } = await execFileAsync('npm', pack, { cwd: ROOT, ...RUN });
    const [{ filename }] = JSON.parse(stdout) as [{ filename: string }];
    fs.mkdirSync(path.dirname(installed), { recursive: true });
    await execFileAsync('tar', ['-xzf', path.join(packed, filename), '-C', path.dirname(installed)], RUN);
    fs.renameSync(path.join(path.dirname(installed), 'package'), installed);
    fs.symlinkSync(
      path.join(ROOT, 'node_modules', EXTERNAL),
      path.join(consumer, 'node_modules', EXTERNAL),
      'junction',
    );
  });

  test('holds the library, its types, the bin, what the bundles load and the built-in model, and nothing else', () => {
    const files = filesUnder(installed, installed).sort();
    const entries = Object.values(manifest.exports).flatMap((target) =>
      typeof target === 'string' ? [target] : Object.values(target),
    );
    for (const file of [...entries, ...Object.values(manifest.bin)])
      assert.ok(files.includes(path.posix.normalize(file)), `${file} (package.json) is not in the tarball`);
    // Exactly these: no sources, tests, benchmarks, the extension's bundles or source maps.
    assert.deepEqual(files, expectedFiles().sort());
  });

  test('its "dependencies" are exactly what its bundles require and its declarations import', async () => {
    const files = filesUnder(installed, installed);
    const bundles = files.filter((file) => /^dist\/[^/]+\.js$/.test(file)).map((file) => path.join(installed, file));
    const declarations = files.filter((file) => file.endsWith('.d.ts')).map((file) => path.join(installed, file));
    const needed = new Set([...(await packagesRequiredBy(bundles)), ...packagesImportedBy(declarations)]);
    const declared = Object.keys(manifest.dependencies);
    // Everything else is bundled: in "dependencies" it would only make every install of the package larger.
    assert.deepEqual(
      {
        missing: [...needed].filter((name) => !declared.includes(name)).sort(),
        unneeded: declared.filter((name) => !needed.has(name)),
      },
      { missing: [], unneeded: [] },
    );
  });

  test('unpacked, it imports as the library and its bin answers about a JPEG and a WebP in int8', async () => {
    const script = `
      const lib = require('ficoco-vision');
      console.log(JSON.stringify({
        resolved: require.resolve('ficoco-vision'),
        methods: lib.METHODS.map((m) => m.name),
        builtin: lib.builtinModelFolder(),
      }));`;
    const { stdout: imported } = await node(['-e', script]);
    const real = fs.realpathSync(installed);
    assert.deepEqual(JSON.parse(imported), {
      resolved: path.join(real, 'dist', 'index.js'),
      methods: METHODS.map((method) => method.name),
      builtin: path.join(real, BUILTIN_MODEL),
    });

    // The default model, both wasm decoders, the chat template's child process and the quantization workers.
    const bin = path.join(installed, manifest.bin.ficoco);
    const images = IMAGES.flatMap((image) => ['--image', image]);
    const ask = ['ask', ...images, '--quantize', 'int8', '--max-new-tokens', '4', '--json', 'what is this?'];
    const { stdout } = await node([bin, ...ask]);
    const answer = JSON.parse(stdout) as { answer: string; stats: { visualTokens: unknown[] } };
    assert.equal(typeof answer.answer, 'string');
    assert.deepEqual(answer.stats.visualTokens, [
      { original: 144, atDecoder: 144 },
      { original: 144, atDecoder: 144 },
    ]);
  });
});
