/**
 * `npm run test:electron`: the smoke test in desktop VS Code, where the extension host is Electron (fork and
 * native modules behave differently there than under code-server's Node). Uses the VS Code named by
 * VSCODE_EXECUTABLE, else one @vscode/test-electron downloads or finds in .vscode-test/; with neither it
 * skips and says so.
 */
import { downloadAndUnzipVSCode, runTests } from '@vscode/test-electron';
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

async function findVsCode(): Promise<string | undefined> {
  const configured = process.env.VSCODE_EXECUTABLE;
  if (configured) {
    if (!fs.existsSync(configured)) throw new Error(`VSCODE_EXECUTABLE is ${configured}, which does not exist.`);
    return configured;
  }
  try {
    return await downloadAndUnzipVSCode({ version: '1.100.3', cachePath: path.join(ROOT, '.vscode-test') });
  } catch (error) {
    console.log(`No VS Code to download (${error instanceof Error ? error.message : String(error)}).`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const vscodeExecutable = await findVsCode();
  if (!vscodeExecutable) {
    console.log(
      'SKIPPED test:electron: it needs desktop VS Code. Set VSCODE_EXECUTABLE to an installed one, or run ' +
        'where update.code.visualstudio.com is reachable.',
    );
    return;
  }
  // The suite runs inside the extension host, which loads plain CommonJS.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-electron-'));
  const suite = path.join(scratch, 'suite.js');
  await esbuild.build({
    entryPoints: [path.join(__dirname, 'suite.ts')],
    outfile: suite,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    external: ['vscode'],
    logLevel: 'warning',
  });
  const workspace = path.join(scratch, 'workspace');
  fs.mkdirSync(workspace);
  try {
    await runTests({
      vscodeExecutablePath: vscodeExecutable,
      extensionDevelopmentPath: ROOT,
      extensionTestsPath: suite,
      extensionTestsEnv: { FICOCO_EVAL_SET: path.join(ROOT, 'bench', 'eval-set') },
      launchArgs: [
        workspace,
        '--disable-extensions',
        '--disable-workspace-trust',
        '--user-data-dir',
        path.join(scratch, 'user-data'),
        '--no-sandbox',
        '--disable-gpu',
      ],
    });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
