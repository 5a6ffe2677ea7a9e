/**
 * Evaluation sets: one JSON object per line (image path relative to the file, question, answer, type), and how answers
 * are scored.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FicocoError } from '../common/errors';
import type { Size } from '../common/anyres';
import { checkImageFile } from '../common/imageFile';
import { exifOrientation, uprightSize } from '../engine/image/orientation';
import { readImageArg } from './args';

export interface EvalItem {
  image: string;
  question: string;
  answer: string;
  type: string;
}

/** An answer is right when its first words are the expected answer (case and punctuation aside). */
export function answerMatches(predicted: string, expected: string): boolean {
  const want = answerWords(expected);
  const got = answerWords(predicted);
  return want.length > 0 && want.every((word, i) => got[i] === word);
}

/**
 * An answer's words as they are compared: lower case, punctuation and spacing aside, except inside a number: "3.5",
 * "10:30" and "1,000" (as 1000) are one word each, so that "3" does not match "3.5 cm".
 */
export function answerWords(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/(?<=\p{N}),(?=\p{N}{3}(?!\p{N}))/gu, '')
    .replace(/(?<!\p{N})[.:]|[.:](?!\p{N})|[^\p{L}\p{N}.:]+/gu, ' ')
    .trim()
    .split(' ')
    .filter(Boolean);
}

/** The items of an evaluation set, each checked (its image too) before any model loads. */
export function readEvalSet(file: string): EvalItem[] {
  if (!fs.existsSync(file))
    throw new FicocoError(`${file} does not exist; --data needs a JSONL evaluation set.`, 'input');
  if (!fs.statSync(file).isFile())
    throw new FicocoError(`${file} is not a file; --data needs a JSONL evaluation set.`, 'input');
  const checked = new Set<string>();
  const items = fs
    .readFileSync(file, 'utf8')
    // A byte order mark, as some Windows editors save UTF-8, is not part of the first line's JSON.
    .replace(/^\uFEFF/, '')
    .split('\n')
    .flatMap((line, i) =>
      line.trim() === '' ? [] : [readItem(line, `${file} line ${i + 1}`, path.dirname(file), checked)],
    );
  if (items.length === 0) throw new FicocoError(`${file} has no items.`, 'input');
  return items;
}

/**
 * One line of an evaluation set; `where` names it in errors, and its image is relative to `folder`. Its image is read
 * unless it is in `checked`, the images already read, then added to them.
 */
function readItem(line: string, where: string, folder: string, checked: Set<string>): EvalItem {
  let item: unknown;
  try {
    item = JSON.parse(line);
  } catch {
    throw new FicocoError(`${where} is not JSON.`, 'input');
  }
  if (typeof item !== 'object' || item === null || Array.isArray(item))
    throw new FicocoError(`${where} is not a JSON object.`, 'input');
  const fields = item as Partial<EvalItem>;
  for (const field of ['image', 'question', 'answer'] as const) {
    if (typeof fields[field] !== 'string') throw new FicocoError(`${where} has no "${field}" string.`, 'input');
  }
  // Nothing would match an answer without a letter or digit: every answer to it would score wrong.
  if (answerWords(fields.answer!).length === 0)
    throw new FicocoError(
      `${where} has the answer ${JSON.stringify(fields.answer)}, without a letter or digit: no answer could match it.`,
      'input',
    );
  const image = path.resolve(folder, fields.image!);
  if (!checked.has(image)) {
    // A file that is not an image would stop the run when its turn came, hours in.
    checkImageFile(readImageArg(image, `${where}: image`).bytes, `${where}: image ${image}`);
    checked.add(image);
  }
  return {
    image,
    question: fields.question!,
    answer: fields.answer!,
    type: typeof fields.type === 'string' ? fields.type : 'all',
  };
}

/** The size each distinct image of the items is read at (upright, as the engine decodes it), from its header. */
export async function evalImageSizes(items: readonly EvalItem[]): Promise<Size[]> {
  const sizes: Size[] = [];
  for (const file of new Set(items.map((item) => item.image))) {
    const bytes = fs.readFileSync(file);
    const header = checkImageFile(bytes, file);
    sizes.push(uprightSize(header, await exifOrientation(bytes, header.format)));
  }
  return sizes;
}
