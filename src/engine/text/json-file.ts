import fs from 'node:fs';
import path from 'node:path';
import { UnreadableFileError, readRegularFile } from '../../common/boundedFile';
import { FicocoError, type FicocoErrorKind } from '../../common/errors';

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The most a model folder's settings file may hold; tokenizer.json, the largest, gets its own bound. */
export const MAX_SETTINGS_FILE_BYTES = 16 * 2 ** 20;
const MAX_FILE_BYTES: Record<string, number> = { 'tokenizer.json': 64 * 2 ** 20 };

/**
 * A model folder's text file, read only when it is a regular file (a link is followed, as in a Hub cache's snapshot)
 * of at most `maxBytes`: it is data from the folder, which may point at a device or a huge file.
 */
export function readModelText(
  file: string,
  maxBytes = MAX_SETTINGS_FILE_BYTES,
  kind: FicocoErrorKind = 'config',
): string {
  try {
    return readRegularFile(file, maxBytes).toString('utf8');
  } catch (error) {
    if (!(error instanceof UnreadableFileError)) throw error;
    throw new FicocoError(
      error.reason === 'not-regular'
        ? `${file} is not a regular file; download the model again.`
        : `${file} is more than ${maxBytes} bytes, more than such a file holds; download the model again.`,
      kind,
    );
  }
}

/** A model folder's JSON file (readModelText); a parse error says where, not what (the file may be any file). */
export function readModelJson(file: string, maxBytes?: number, kind: FicocoErrorKind = 'config'): unknown {
  const text = readModelText(file, maxBytes, kind);
  try {
    return JSON.parse(text);
  } catch (error) {
    const at = /position (\d+)/.exec((error as Error).message)?.[1];
    throw new FicocoError(
      `${file} is not valid JSON${at ? ` (at character ${at})` : ''}; download the model again.`,
      kind,
    );
  }
}

/** Reads `fileName` in the model folder as a JSON object; undefined when the file does not exist. */
export function readOptionalJson(modelDir: string, fileName: string): JsonObject | undefined {
  const file = path.join(modelDir, fileName);
  if (!fs.existsSync(file)) return undefined;
  const parsed = readModelJson(file, MAX_FILE_BYTES[fileName]);
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
