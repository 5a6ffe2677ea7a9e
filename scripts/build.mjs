// Bundles the entry points with esbuild; native and wasm parts stay files beside the bundles. The library's
// declarations come from tsc (tsconfig.types.json) into dist/types.
import { execFileSync } from 'node:child_process';
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';
import * as path from 'node:path';

const production = process.argv.includes('--production');
const outdir = 'dist';

// Only the engine side (cli, host, the library index.js) loads onnxruntime-node; only the extension loads vscode. The
// engine renders chat templates in a child process started from template-child.js beside it
// (src/engine/text/template-process.ts) and quantizes weights in child processes started from quantize-worker.js
// (src/engine/weights/quantizeWorkers.ts); the library, in its caller's process, finds them in dist/ as the cli does.
const entries = [
  { in: 'src/cli/main.ts', out: 'cli', banner: '#!/usr/bin/env node', external: ['onnxruntime-node'] },
  { in: 'src/host/main.ts', out: 'host', external: ['onnxruntime-node'] },
  { in: 'src/index.ts', out: 'index', external: ['onnxruntime-node'] },
  { in: 'src/extension/extension.ts', out: 'extension', external: ['vscode'] },
  { in: 'src/engine/text/template-child.ts', out: 'template-child' },
  { in: 'src/engine/weights/quantize-worker.ts', out: 'quantize-worker' },
];

fs.mkdirSync(outdir, { recursive: true });
await Promise.all([
  ...entries.map((entry) =>
    esbuild.build({
      entryPoints: [{ in: entry.in, out: entry.out }],
      outdir,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      sourcemap: !production,
      minify: production,
      // The native ONNX Runtime binding is loaded from node_modules at run time; vscode is the editor's.
      external: entry.external,
      banner: entry.banner ? { js: entry.banner } : undefined,
      logLevel: 'warning',
    }),
  ),
  // The webview's script and stylesheet, loaded by the page the extension builds (src/extension/webviewHtml.ts).
  esbuild.build({
    entryPoints: [
      { in: 'webview/main.ts', out: 'webview' },
      { in: 'webview/style.css', out: 'webview' },
    ],
    outdir,
    bundle: true,
    platform: 'browser',
    target: 'es2022',
    format: 'iife',
    sourcemap: !production,
    minify: production,
    logLevel: 'warning',
  }),
]);

// The wasm image decoders load their .wasm from beside the code that imports them: the bundle.
for (const wasm of ['@cwasm/jpeg-turbo/jpeg-turbo.wasm', '@cwasm/webp/webp.wasm']) {
  fs.copyFileSync(path.join('node_modules', wasm), path.join(outdir, path.basename(wasm)));
}
fs.chmodSync(path.join(outdir, 'cli.js'), 0o755);

// The library's types (package.json "types"): src/index.ts and what it imports, written afresh each build.
fs.rmSync(path.join(outdir, 'types'), { recursive: true, force: true });
execFileSync(process.execPath, [path.join('node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.types.json'], {
  stdio: 'inherit',
});
