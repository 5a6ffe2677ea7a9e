/** Whether the dynamic loader would find a shared library on Linux, asked without loading it. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** How `ldconfig -p` tags a library built for this process's architecture: "(libc6,x86-64)"; a 32-bit one has none. */
const LDCONFIG_ARCH: Partial<Record<NodeJS.Architecture, string>> = { x64: 'x86-64', arm64: 'AArch64' };

/**
 * The libraries of `names` that none of the loader's places hold for this architecture: `ldconfig -p`'s cache,
 * LD_LIBRARY_PATH and `folders`. `ldconfigOutput` and `arch` are for tests.
 */
export function missingLibraries(
  names: readonly string[],
  folders: readonly string[] = [],
  env: NodeJS.ProcessEnv = process.env,
  ldconfigOutput: string = readLdconfig(),
  arch: NodeJS.Architecture = process.arch,
): string[] {
  const tag = LDCONFIG_ARCH[arch];
  const cached = new Set(
    [...ldconfigOutput.matchAll(/^\s*(\S+) \(([^)]*)\)/gm)]
      .filter((match) => tag === undefined || match[2].split(',').includes(tag))
      .map((match) => match[1]),
  );
  const searched = [...(env.LD_LIBRARY_PATH ?? '').split(':'), ...folders].filter(Boolean);
  return names.filter(
    (library) => !cached.has(library) && !searched.some((folder) => fs.existsSync(path.join(folder, library))),
  );
}

function readLdconfig(): string {
  for (const ldconfig of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      return execFileSync(ldconfig, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      // the next candidate
    }
  }
  return '';
}
