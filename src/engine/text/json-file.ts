import fs from 'node:fs';
import path from 'node:path';
import { FicocoError } from '../../common/errors';

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads `fileName` in the model folder as a JSON object; undefined when the file does not exist. */
export function readOptionalJson(modelDir: string, fileName: string): JsonObject | undefined {
  const file = path.join(modelDir, fileName);
  if (!fs.existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new FicocoError(
      `${file} is not valid JSON (${(error as Error).message}); download the model again.`,
      'config',
    );
  }
  if (!isJsonObject(parsed))
    throw new FicocoError(`${file} must hold a JSON object; download the model again.`, 'config');
  return parsed;
}

/** A token as tokenizer_config.json writes it: a plain string or an AddedToken object {content: ...}. */
export function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (isJsonObject(value) && typeof value['content'] === 'string') return value['content'];
  return undefined;
}
