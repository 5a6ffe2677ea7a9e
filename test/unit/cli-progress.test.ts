import assert from 'node:assert/strict';
import { test } from 'node:test';
import { quantizingOnStderr } from '../../src/cli/args';

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
