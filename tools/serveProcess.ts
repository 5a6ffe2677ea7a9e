/**
 * `ficoco serve` as a child process on 127.0.0.1 (the CLI from source, --port 0), for tests and benchmarks: resolves
 * once it says where it listens.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'src', 'cli', 'main.ts');

export interface ServeProcess {
  /** http://127.0.0.1:PORT */
  url: string;
  child: ChildProcess;
  /** its stderr so far, a line each */
  log: string[];
  /** SIGTERM, then the exit */
  close(): Promise<void>;
}

/** `args` go to `ficoco serve` after `--port 0`; no API key is inherited from the environment. */
export async function startServe(...args: string[]): Promise<ServeProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', '--port', '0', ...args], {
    cwd: ROOT,
    env: { ...process.env, FICOCO_API_KEY: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    let pending = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      log.push(...lines);
      const ready = lines.map((line) => / at (http:\/\/\S+)\/v1 /.exec(line)).find(Boolean);
      if (ready) resolve(ready[1]);
    });
    child.once('exit', (code) => reject(new Error(`ficoco serve exited with ${code}:\n${log.join('\n')}${pending}`)));
  });
  return {
    url,
    child,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
