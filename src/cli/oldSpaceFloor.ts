import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as inspector from 'node:inspector';
import { ENGINE_OLD_SPACE_FLOOR } from '../client/engineClient';

/** The flag's name: a value given on the command line (`node --initial-old-space-size=256 …`) is left as it is. */
const FLOOR_NAME = ENGINE_OLD_SPACE_FLOOR.split('=')[0];

/** Signals sent to this process alone (`kill PID`, a caller's timeout) must stop the child that does the work. */
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Runs this command again in a child Node started with ENGINE_OLD_SPACE_FLOOR, on this process's stdio, and resolves
 * to its exit code; undefined where this process can run the command itself: it has the flag already, or a debugger
 * attached, which the child could not share. V8 reads the flag only when a process starts (v8.setFlagsFromString
 * later changes nothing), so the long in-process runs of bench, tune and eval need a process started with it.
 */
export async function rerunWithOldSpaceFloor(): Promise<number | undefined> {
  const hasFloor = process.execArgv.some((arg) => arg.replaceAll('_', '-').startsWith(FLOOR_NAME));
  if (hasFloor || inspector.url() !== undefined) return undefined;
  return runNode([...process.execArgv, ENGINE_OLD_SPACE_FLOOR, ...process.argv.slice(1)]);
}

/**
 * `node args…` on this process's stdio, its exit code once it ends. Signals sent to this process alone reach the child
 * too; a child ended by a signal ends this process by the same one, so that its caller (a shell: 130 after Ctrl+C)
 * sees it.
 */
export async function runNode(args: string[], options: { cwd?: string } = {}): Promise<number> {
  const child = spawn(process.execPath, args, { stdio: 'inherit', cwd: options.cwd });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
  const [code, signal] = (await once(child, 'exit').finally(() => {
    for (const forwarded of FORWARDED_SIGNALS) process.off(forwarded, forward);
  })) as [number | null, NodeJS.Signals | null];
  if (signal !== null) process.kill(process.pid, signal);
  return code ?? 1;
}
