import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StopStrings } from '../../src/server/stopStrings';

/** Feeds `pieces` and returns what was released, piece by piece, then the flush. */
function feed(stops: string[], pieces: string[]): { released: string[]; stopped: boolean } {
  const matcher = new StopStrings(stops);
  const released = pieces.map((piece) => matcher.push(piece));
  released.push(matcher.flush());
  return { released, stopped: matcher.stopped };
}

test('text without a stop string passes through whole', () => {
  assert.deepEqual(feed(['###'], ['hello ', 'world']), { released: ['hello ', 'world', ''], stopped: false });
});

test('a stop string split over pieces is held back, then cut with everything after it', () => {
  assert.deepEqual(feed(['</answer>'], ['the red </', 'ans', 'wer> and more', 'ignored']), {
    released: ['the red ', '', '', '', ''],
    stopped: true,
  });
});

test('a held-back start that does not become a stop string is released with the next piece', () => {
  assert.deepEqual(feed(['STOP'], ['go ST', 'ART now']), { released: ['go ', 'START now', ''], stopped: false });
});

test('the earliest of several stop strings wins; a held tail is released at the end', () => {
  assert.deepEqual(feed(['b', 'a'], ['xxab']), { released: ['xx', ''], stopped: true });
  assert.deepEqual(feed(['abc'], ['x', 'ab']), { released: ['x', '', 'ab'], stopped: false });
});
