/**
 * Readers for the fields of a received JSON value, each naming the field and what was expected when it is wrong. A
 * contract makes its own set with the error it throws (a webview message error, a JSON-RPC error).
 */
import { describeValue } from './describe';

export interface FieldReaders {
  record(value: unknown, field: string): Record<string, unknown>;
  array(value: unknown, field: string): unknown[];
  string(value: unknown, field: string): string;
  nonEmptyString(value: unknown, field: string): string;
  /** a finite number ≥ 0 */
  nonNegative(value: unknown, field: string): number;
  /** a whole number ≥ 0 */
  count(value: unknown, field: string): number;
  oneOf<T extends string>(value: unknown, field: string, allowed: readonly string[]): T;
  /** what a reduction did to one image's patches: k kept, m merged, d dropped, with a tiled image's tile borders */
  patchFates(value: unknown, field: string): PatchFates;
}

export interface PatchFates {
  rows: number;
  cols: number;
  patches: string;
  tileBorders?: { rows: number[]; cols: number[] };
}

export function fieldReaders(fail: (message: string) => Error): FieldReaders {
  const readers: FieldReaders = {
    record(value, field) {
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        throw fail(`${field} is ${describeValue(value)}; expected an object.`);
      return value as Record<string, unknown>;
    },
    array(value, field) {
      if (!Array.isArray(value)) throw fail(`${field} is ${describeValue(value)}; expected an array.`);
      return value;
    },
    string(value, field) {
      if (typeof value !== 'string') throw fail(`${field} is ${describeValue(value)}; expected a string.`);
      return value;
    },
    nonEmptyString(value, field) {
      const text = readers.string(value, field);
      if (text === '') throw fail(`${field} is empty.`);
      return text;
    },
    nonNegative(value, field) {
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
        throw fail(`${field} is ${describeValue(value)}; expected a number ≥ 0.`);
      return value;
    },
    count(value, field) {
      const number = readers.nonNegative(value, field);
      if (!Number.isInteger(number)) throw fail(`${field} is ${number}; expected a whole number.`);
      return number;
    },
    oneOf<T extends string>(value: unknown, field: string, allowed: readonly string[]): T {
      if (typeof value !== 'string' || !allowed.includes(value))
        throw fail(`${field} is ${describeValue(value)}; expected one of ${allowed.join(', ')}.`);
      return value as T;
    },
    patchFates(value, field) {
      const image = readers.record(value, field);
      const rows = readers.count(image.rows, `${field}.rows`);
      const cols = readers.count(image.cols, `${field}.cols`);
      const patches = readers.string(image.patches, `${field}.patches`);
      if (patches.length !== rows * cols || !/^[kmd]*$/.test(patches))
        throw fail(`${field}.patches must be ${rows * cols} of k, m or d.`);
      if (image.tileBorders === undefined) return { rows, cols, patches };
      const borders = readers.record(image.tileBorders, `${field}.tileBorders`);
      const within = (list: unknown, extent: number, name: string) =>
        readers.array(list, `${field}.tileBorders.${name}`).map((at, j) => {
          const border = readers.nonNegative(at, `${field}.tileBorders.${name}[${j}]`);
          if (border <= 0 || border >= extent)
            throw fail(`${field}.tileBorders.${name}[${j}] must lie inside the ${extent}-patch grid.`);
          return border;
        });
      return {
        rows,
        cols,
        patches,
        tileBorders: { rows: within(borders.rows, rows, 'rows'), cols: within(borders.cols, cols, 'cols') },
      };
    },
  };
  return readers;
}
