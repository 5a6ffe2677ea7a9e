import { PromiseWithChild, execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'src', 'cli', 'main.ts');
const execFileAsync = promisify(execFile);

/**
 * Runs `ficoco ARGS` from source (node --import tsx) in the repository root, with `env` as its whole environment
 * when given; rejects on a non-zero exit with an error that carries code, stdout and stderr. `child` is the process, for
 * a test that reads its output as it comes.
 */
export function runCli(
  args: readonly string[],
  env?: NodeJS.ProcessEnv,
): PromiseWithChild<{ stdout: string; stderr: string }> {
  return execFileAsync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, ...(env ? { env } : {}) });
}
