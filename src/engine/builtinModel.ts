import * as fs from 'node:fs';
import * as path from 'node:path';

/** Where the built-in model sits inside the package (and the repository): models/tiny-llava-screens. */
export const BUILTIN_MODEL_PATH = ['models', 'tiny-llava-screens'] as const;

/**
 * The built-in model folder seen from a bundle or source folder (dist/, src/cli/, …): the first ancestor
 * that holds models/tiny-llava-screens/config.json, or undefined when the package has none.
 */
export function findBuiltinModel(fromDir: string): string | undefined {
  for (let dir = fromDir, depth = 0; depth < 4; dir = path.dirname(dir), depth++) {
    const candidate = path.join(dir, ...BUILTIN_MODEL_PATH);
    if (fs.existsSync(path.join(candidate, 'config.json'))) return candidate;
  }
  return undefined;
}
