import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { ANSWERING_CONTEXT, countedActivity } from '../../src/extension/activity';

const menus = (
  JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
    contributes: { menus: { commandPalette: { command: string; when: string }[] } };
  }
).contributes.menus;

describe('Stop Answering only while something runs', () => {
  test('the Command Palette shows ficoco.stop only under the context key the chat sets', () => {
    assert.deepEqual(
      menus.commandPalette.filter((entry) => entry.command === 'ficoco.stop'),
      [{ command: 'ficoco.stop', when: ANSWERING_CONTEXT }],
    );
  });

  test('the key turns on with the first reply in flight and off after the last, passing each step on', () => {
    const inner: string[] = [];
    const changes: boolean[] = [];
    const activity = countedActivity({ busy: () => inner.push('busy'), idle: () => inner.push('idle') }, (busy) =>
      changes.push(busy),
    );
    activity.busy();
    activity.busy();
    activity.idle();
    assert.deepEqual(changes, [true]);
    activity.idle();
    assert.deepEqual(changes, [true, false]);
    // An unmatched idle never turns the key on again or below zero.
    activity.idle();
    activity.busy();
    assert.deepEqual(changes, [true, false, true]);
    assert.deepEqual(inner, ['busy', 'busy', 'idle', 'idle', 'idle', 'busy']);
  });
});
