// Builds one VSIX per platform into dist-vsix/, each with only that platform's ONNX Runtime binaries.
//   node scripts/package.mjs                      every target
//   node scripts/package.mjs --target linux-x64   one target (the e2e suite's)
// Before packaging, `vsce ls` with the target's ignore file must list exactly its own binaries, the
// built-in model and no other model weights; the sizes of the packages are printed at the end.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** VS Code target → the folder of its binaries in onnxruntime-node, and the files that are not needed there. */
const TARGETS = {
  'linux-x64': { binaries: 'linux/x64', unused: [] },
  'linux-arm64': { binaries: 'linux/arm64', unused: [] },
  'win32-x64': { binaries: 'win32/x64', unused: [] },
  'win32-arm64': { binaries: 'win32/arm64', unused: [] },
  // The binding loads @rpath/libonnxruntime.1.dylib; the versioned copy is the same library again.
  'darwin-arm64': { binaries: 'darwin/arm64', unused: ['libonnxruntime.1.30.0.dylib'] },
};
const BINARIES = 'node_modules/onnxruntime-node/bin/napi-v6';
const BUILTIN_MODEL = 'models/tiny-llava-screens/';
const OUT = 'dist-vsix';

const targetArg = process.argv.indexOf('--target');
const wanted = targetArg >= 0 ? [process.argv[targetArg + 1]] : Object.keys(TARGETS);
for (const target of wanted)
  if (!(target in TARGETS))
    throw new Error(`unknown target ${target}; expected one of ${Object.keys(TARGETS).join(', ')}`);

const version = JSON.parse(fs.readFileSync('package.json', 'utf8')).version;
const baseIgnore = fs.readFileSync('.vscodeignore', 'utf8');
const vsce = (args) =>
  execFileSync(process.execPath, [path.join('node_modules', '@vscode', 'vsce', 'vsce'), ...args], { encoding: 'utf8' });

fs.mkdirSync(OUT, { recursive: true });
const sizes = [];
for (const target of wanted) {
  const { binaries, unused } = TARGETS[target];
  const ignoreFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-package-')), '.vscodeignore');
  // vsce lets a negation win over every ignore, so the target's binaries are re-included one by one.
  const own = fs
    .readdirSync(path.join(BINARIES, binaries))
    .filter((file) => !unused.includes(file))
    .map((file) => `!${BINARIES}/${binaries}/${file}`);
  if (!baseIgnore.includes(`!${BINARIES}/PLATFORM/*`))
    throw new Error(`.vscodeignore must re-include !${BINARIES}/PLATFORM/* (rewritten per target)`);
  fs.writeFileSync(ignoreFile, baseIgnore.replace(`!${BINARIES}/PLATFORM/*`, own.join('\n')));

  const files = vsce(['ls', '--ignoreFile', ignoreFile]).split('\n').filter(Boolean);
  const foreign = files.filter(
    (file) =>
      file.startsWith(`${BINARIES}/`) &&
      (!file.startsWith(`${BINARIES}/${binaries}/`) || unused.some((u) => file.endsWith(u))),
  );
  const ownBinding = files.includes(`${BINARIES}/${binaries}/onnxruntime_binding.node`);
  const otherWeights = files.filter(
    (file) => /\.(safetensors|onnx|gguf|bin)$/.test(file) && !file.startsWith(BUILTIN_MODEL),
  );
  if (foreign.length > 0 || !ownBinding || otherWeights.length > 0) {
    throw new Error(
      `${target}: the package would hold ${[...foreign, ...otherWeights].join(', ') || 'no ONNX Runtime binding of its own'}`,
    );
  }

  const vsix = path.join(OUT, `ficoco-vision-${target}-${version}.vsix`);
  vsce([
    'package',
    '--target',
    target,
    '--ignoreFile',
    ignoreFile,
    '--out',
    vsix,
    '--allow-missing-repository',
    '--no-rewrite-relative-links',
  ]);
  sizes.push([target, fs.statSync(vsix).size, files.length]);
  fs.rmSync(path.dirname(ignoreFile), { recursive: true, force: true });
}
process.stdout.write(
  [
    '| target | VSIX | files |',
    '|---|---:|---:|',
    ...sizes.map(([t, bytes, count]) => `| ${t} | ${(bytes / 1e6).toFixed(1)} MB | ${count} |`),
  ].join('\n') + '\n',
);
