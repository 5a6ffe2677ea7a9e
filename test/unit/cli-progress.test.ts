import assert from 'node:assert/strict';
import { test } from 'node:test';
import { prefillOnTerminal, quantizingOnStderr } from '../../src/cli/args';

test('a first quantized load prints a line on stderr at each quarter of its layers, and none without quantization', (t) => {
  assert.equal(quantizingOnStderr('none'), undefined);
  const written: string[] = [];
  t.mock.method(process.stderr, 'write', (chunk: string) => written.push(chunk) > 0);
  const report = quantizingOnStderr('int4')!;
  for (let done = 1; done <= 10; done++) report(done, 10);
  t.mock.restoreAll();
  assert.deepEqual(written, [
    'Quantizing to int4 (first load only): 3 / 10 layers\n',
    'Quantizing to int4 (first load only): 5 / 10 layers\n',
    'Quantizing to int4 (first load only): 8 / 10 layers\n',
    'Quantizing to int4 (first load only): 10 / 10 layers\n',
  ]);
});

test("ask's prefill progress: one rewritten line on a terminal, erased before the answer; nothing elsewhere", () => {
  const written: string[] = [];
  const terminal = { isTTY: true, write: (chunk: string) => written.push(chunk) > 0 };
  const progress = prefillOnTerminal(terminal);
  progress.show!({ stage: 'image', done: 0, total: 10, nextRunMs: 900 });
  progress.show!({ stage: 'image', done: 1, total: 10 });
  progress.show!({ stage: 'prompt', done: 30, total: 120 });
  progress.erase();
  progress.erase();
  assert.deepEqual(written, [
    '\r\x1b[KReading the image',
    '\r\x1b[KReading the image: part 1 of 10',
    '\r\x1b[KReading the prompt: 25 %',
    '\r\x1b[K',
  ]);
  const piped = prefillOnTerminal({ isTTY: false, write: () => assert.fail('nothing is written to a pipe') });
  assert.equal(piped.show, undefined);
  piped.erase();
});
