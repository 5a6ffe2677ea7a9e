import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as inspector from 'node:inspector';
import * as path from 'node:path';
import { ENGINE_OLD_SPACE_FLOOR, lacksEngineHugePages, withEngineHugePages } from '../client/engineClient';

/** The flag's name: a value given on the command line (`node --initial-old-space-size=256 …`) is left as it is. */
const FLOOR_NAME = ENGINE_OLD_SPACE_FLOOR.split('=')[0];

/** Signals sent to this process alone (`kill PID`, a caller's timeout) must stop the child that does the work. */
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Runs this command again in a child Node started as the engine's own process is, with ENGINE_OLD_SPACE_FLOOR and
 * (on Linux) ENGINE_HUGE_PAGES, on this process's stdio, and resolves to its exit code; undefined where this process
 * can run the command itself: it has both already, or a debugger attached, which the child could not share. V8 and
 * glibc read them only when a process starts (v8.setFlagsFromString later changes nothing), so the long in-process
 * runs of bench, tune and eval, and a large model's ask, need a process started with them.
 */
export async function rerunAsEngineProcess(): Promise<number | undefined> {
  const hasFloor = process.execArgv.some((arg) => arg.replaceAll('_', '-').startsWith(FLOOR_NAME));
  if ((hasFloor && !lacksEngineHugePages(process.env)) || inspector.url() !== undefined) return undefined;
  const flags = hasFloor ? process.execArgv : [...process.execArgv, ENGINE_OLD_SPACE_FLOOR];
  return runNode([...flags, ...process.argv.slice(1)], { env: withEngineHugePages(process.env) });
}

/** For a script that runs the engine in its own process: runs it again as rerunAsEngineProcess says, and exits so. */
export async function continueAsEngineProcess(): Promise<void> {
  const childExitCode = await rerunAsEngineProcess();
  if (childExitCode !== undefined) process.exit(childExitCode);
}

/** A weights file at least this large loads seconds sooner with huge pages: worth a second process (about 0.4 s). */
const LARGE_WEIGHTS_BYTES = 256 * 2 ** 20;

/**
 * Whether a file in the model folder (a link's target, as in the Hugging Face cache) is LARGE_WEIGHTS_BYTES or more;
 * false for a folder that cannot be read, which loading the model then explains.
 */
export function hasLargeWeights(modelDir: string): boolean {
  try {
    return fs.readdirSync(modelDir).some((name) => {
      const stats = fs.statSync(path.join(modelDir, name));
      return stats.isFile() && stats.size >= LARGE_WEIGHTS_BYTES;
    });
  } catch {
    return false;
  }
}

/**
 * `node args…` on this process's stdio, its exit code once it ends. Signals sent to this process alone reach the child
 * too; a child ended by a signal ends this process by the same one, so that its caller (a shell: 130 after Ctrl+C)
 * sees it.
 */
export async function runNode(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<number> {
  const child = spawn(process.execPath, args, { stdio: 'inherit', cwd: options.cwd, env: options.env });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
  const [code, signal] = (await once(child, 'exit').finally(() => {
    for (const forwarded of FORWARDED_SIGNALS) process.off(forwarded, forward);
  })) as [number | null, NodeJS.Signals | null];
  if (signal !== null) process.kill(process.pid, signal);
  return code ?? 1;
}
