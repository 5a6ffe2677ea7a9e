/** Which addresses are this machine, and what may go to an address in the clear. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLoopback, privateTo } from '../../src/common/loopback';

test('this machine: localhost, 127.0.0.0/8 and ::1, as names, addresses or Host headers', () => {
  for (const host of ['localhost', 'LOCALHOST', '127.0.0.1', '127.1.2.3', '::1', '[::1]'])
    assert.ok(isLoopback(host), host);
  for (const host of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'localhost.evil.com', '127.0.0.1.nip.io', 'gpu-box'])
    assert.ok(!isLoopback(host), host);
});

test('a key or token goes in the clear only to this machine; https anywhere', () => {
  for (const url of ['https://gpu-box:8080/v1', 'http://127.0.0.1:8080/v1', 'http://localhost/v1', 'http://[::1]:9/v1'])
    assert.ok(privateTo(url), url);
  for (const url of [
    'http://gpu-box:8080/v1',
    'http://10.0.0.5/v1',
    'http://localhost.evil.com/v1',
    'ftp://127.0.0.1/',
  ])
    assert.ok(!privateTo(url), url);
});
