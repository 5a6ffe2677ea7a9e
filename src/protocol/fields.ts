/**
 * Readers for the fields of a received JSON value, each naming the field and what was expected when it is wrong. A
 * contract makes its own set with the error it throws (a webview message error, a JSON-RPC error).
 */
import { describeValue } from './describe';

export interface FieldReaders {
  record(value: unknown, field: string): Record<string, unknown>;
  array(value: unknown, field: string): unknown[];
  /** a string of at most `most` characters (any length when absent) */
  string(value: unknown, field: string, most?: number): string;
  nonEmptyString(value: unknown, field: string, most?: number): string;
  /** a finite number ≥ 0 */
  nonNegative(value: unknown, field: string): number;
  /** a whole number ≥ 0, at most `most` (any size when absent) */
  count(value: unknown, field: string, most?: number): number;
  oneOf<T extends string>(value: unknown, field: string, allowed: readonly string[]): T;
  /**
   * what a reduction did to one image's patches: k kept, m merged, d dropped, with a tiled image's tile borders and its
   * thumbnail's patches
   */
  patchFates(value: unknown, field: string): PatchFates;
}

/**
 * The most patches a grid may have: a thumbnail is one tile (27 × 27 on LLaVA-OneVision; 128 × 128 allowed), a tiled
 * image's grid at most 64 tiles of it (the engine's bound on a pinpoint) — more visual tokens than any run holds.
 */
const MAX_THUMBNAIL_PATCHES = 128 * 128;
const MAX_GRID_PATCHES = 64 * MAX_THUMBNAIL_PATCHES;

/** One image's patches, row by row: k kept, m merged, d dropped. */
export interface PatchGrid {
  rows: number;
  cols: number;
  patches: string;
}

/** A rectangle as fractions of an image's width and height. */
export interface ImageRegion {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** How far past the image a seen region may reach: a padded 1:32 strip is 32 of its heights tall. */
const MAX_REGION_EXTENT = 64;

export interface PatchFates extends PatchGrid {
  tileBorders?: { rows: number[]; cols: number[] };
  thumbnail?: PatchGrid;
  /** an image seen whole, where that is not all of it: the part of it the grid covers (a centre crop, a padded square) */
  seen?: ImageRegion;
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
    string(value, field, most = Infinity) {
      if (typeof value !== 'string') throw fail(`${field} is ${describeValue(value)}; expected a string.`);
      if (value.length > most) throw fail(`${field} has ${value.length} characters; at most ${most} are read.`);
      return value;
    },
    nonEmptyString(value, field, most) {
      const text = readers.string(value, field, most);
      if (text === '') throw fail(`${field} is empty.`);
      return text;
    },
    nonNegative(value, field) {
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
        throw fail(`${field} is ${describeValue(value)}; expected a number ≥ 0.`);
      return value;
    },
    count(value, field, most = Infinity) {
      const number = readers.nonNegative(value, field);
      if (!Number.isInteger(number)) throw fail(`${field} is ${number}; expected a whole number.`);
      if (number > most) throw fail(`${field} is ${number}; expected a whole number from 0 to ${most}.`);
      return number;
    },
    oneOf<T extends string>(value: unknown, field: string, allowed: readonly string[]): T {
      if (typeof value !== 'string' || !allowed.includes(value))
        throw fail(`${field} is ${describeValue(value)}; expected one of ${allowed.join(', ')}.`);
      return value as T;
    },
    patchFates(value, field) {
      const region = (value: unknown, where: string): ImageRegion => {
        const read = readers.record(value, where);
        const [left, top, width, height] = (['left', 'top', 'width', 'height'] as const).map((side) => {
          const at = read[side];
          if (typeof at !== 'number' || !(Math.abs(at) <= MAX_REGION_EXTENT))
            throw fail(
              `${where}.${side} is ${describeValue(at)}; expected a number from -${MAX_REGION_EXTENT} to ${MAX_REGION_EXTENT}.`,
            );
          return at;
        });
        if (width <= 0 || height <= 0) throw fail(`${where} is ${width} × ${height}; a region has an area.`);
        return { left, top, width, height };
      };
      const patchGrid = (grid: Record<string, unknown>, where: string, most: number): PatchGrid => {
        const rows = readers.count(grid.rows, `${where}.rows`);
        const cols = readers.count(grid.cols, `${where}.cols`);
        // Each patch becomes an element of the overlay: a grid no model makes is refused before it is drawn.
        if (rows * cols > most) throw fail(`${where} has ${rows} × ${cols} patches; at most ${most} are drawn.`);
        const patches = readers.string(grid.patches, `${where}.patches`);
        if (patches.length !== rows * cols || !/^[kmd]*$/.test(patches))
          throw fail(`${where}.patches must be ${rows * cols} of k, m or d.`);
        return { rows, cols, patches };
      };
      const image = readers.record(value, field);
      const { rows, cols, patches } = patchGrid(image, field, MAX_GRID_PATCHES);
      if (image.tileBorders === undefined) {
        if (image.thumbnail !== undefined)
          throw fail(`${field}.thumbnail comes only with a tiled image's tileBorders.`);
        return {
          rows,
          cols,
          patches,
          ...(image.seen === undefined ? {} : { seen: region(image.seen, `${field}.seen`) }),
        };
      }
      if (image.seen !== undefined) throw fail(`${field}.seen comes only with an image seen whole, not tiled.`);
      const where = `${field}.thumbnail`;
      const thumbnail =
        image.thumbnail === undefined
          ? undefined
          : patchGrid(readers.record(image.thumbnail, where), where, MAX_THUMBNAIL_PATCHES);
      if (thumbnail && thumbnail.rows !== thumbnail.cols)
        throw fail(`${where} is ${thumbnail.rows} × ${thumbnail.cols}; a thumbnail is square.`);
      const borders = readers.record(image.tileBorders, `${field}.tileBorders`);
      // Each border is an element of the overlay: at most one per cell edge, in order (a shrunk grid's fall between).
      const within = (list: unknown, extent: number, name: string) => {
        const where = `${field}.tileBorders.${name}`;
        const values = readers.array(list, where);
        if (values.length > Math.max(extent - 1, 0))
          throw fail(`${where} has ${values.length} borders; a ${extent}-patch side has at most ${extent - 1}.`);
        let previous = 0;
        return values.map((at, j) => {
          const border = readers.nonNegative(at, `${where}[${j}]`);
          if (border <= 0 || border >= extent) throw fail(`${where}[${j}] must lie inside the ${extent}-patch grid.`);
          if (border <= previous) throw fail(`${where}[${j}] is ${border}; each border lies after the one before.`);
          previous = border;
          return border;
        });
      };
      return {
        rows,
        cols,
        patches,
        tileBorders: { rows: within(borders.rows, rows, 'rows'), cols: within(borders.cols, cols, 'cols') },
        ...(thumbnail ? { thumbnail } : {}),
      };
    },
  };
  return readers;
}
