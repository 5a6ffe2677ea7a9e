import assert from 'node:assert/strict';
import { FicocoError, FicocoErrorKind } from '../../src/common/errors';

/** Asserts `fn` throws a FicocoError of `kind` whose message matches. */
export function throwsFicoco(fn: () => unknown, kind: FicocoErrorKind, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof FicocoError, `expected FicocoError, got ${String(error)}`);
    assert.equal(error.kind, kind);
    assert.match(error.message, message);
    return true;
  });
}

/** Largest elementwise |a − b| (asserts equal lengths). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}
