/**
 * Evaluation sets: one JSON object per line (image path relative to the file, question, answer, type), and how answers
 * are scored.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FicocoError } from '../common/errors';

export interface EvalItem {
  image: string;
  question: string;
  answer: string;
  type: string;
}

/** An answer is right when its first words are the expected answer (case and punctuation aside). */
export function answerMatches(predicted: string, expected: string): boolean {
  const words = (text: string) =>
    text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}]+/gu, ' ')
      .trim()
      .split(' ')
      .filter(Boolean);
  const want = words(expected);
  const got = words(predicted);
  return want.length > 0 && want.every((word, i) => got[i] === word);
}

export function readEvalSet(file: string): EvalItem[] {
  if (!fs.existsSync(file))
    throw new FicocoError(`${file} does not exist; --data needs a JSONL evaluation set.`, 'input');
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      let item: Partial<EvalItem>;
      try {
        item = JSON.parse(line) as Partial<EvalItem>;
      } catch {
        throw new FicocoError(`${file} line ${i + 1} is not JSON.`, 'input');
      }
      for (const field of ['image', 'question', 'answer'] as const) {
        if (typeof item[field] !== 'string')
          throw new FicocoError(`${file} line ${i + 1} has no "${field}" string.`, 'input');
      }
      return {
        image: path.resolve(path.dirname(file), item.image!),
        question: item.question!,
        answer: item.answer!,
        type: typeof item.type === 'string' ? item.type : 'all',
      };
    });
}
