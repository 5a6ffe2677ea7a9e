import assert from 'node:assert/strict';
import { FicocoError, FicocoErrorKind } from '../../src/engine/errors';

/** Asserts `fn` throws a FicocoError of `kind` whose message matches. */
export function throwsFicoco(fn: () => unknown, kind: FicocoErrorKind, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof FicocoError, `expected FicocoError, got ${String(error)}`);
    assert.equal(error.kind, kind);
    assert.match(error.message, message);
    return true;
  });
}
