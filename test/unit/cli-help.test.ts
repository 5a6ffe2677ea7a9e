import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMANDS, OVERVIEW } from '../../src/cli/commands';

test("every option a command's parser takes is in that command's --help", () => {
  for (const [name, command] of Object.entries(COMMANDS))
    for (const option of Object.keys(command.options)) {
      // --help itself is in the overview, which says how to get a command's usage.
      if (option === 'help') continue;
      // Whole option names: --image is not documented by --image-size, nor --budget by --budgets.
      assert.match(command.usage, new RegExp(`--${option}(?![\\w-])`), `ficoco ${name} --${option}`);
    }
});

test("ficoco --help is one screen: a line per command saying what it does, and how to get a command's help", () => {
  const lines = OVERVIEW.trimEnd().split('\n');
  assert.ok(lines.length <= 24, `${lines.length} lines:\n${OVERVIEW}`);
  for (const [name, command] of Object.entries(COMMANDS))
    assert.ok(lines.includes(`  ${name.padEnd(11)}${command.summary}`));
  assert.match(OVERVIEW, /`ficoco COMMAND --help` or `ficoco help COMMAND`: that command's usage and options\./);
  // One line per command, in a screen's width.
  for (const line of lines) assert.ok(line.length <= 100, line);
});
