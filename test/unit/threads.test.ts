import assert from 'node:assert/strict';
import { test } from 'node:test';
import { coresPerWorker, defaultThreads, physicalCores } from '../../src/engine/runtime/threads';

/** /proc/cpuinfo blocks, one per logical CPU, with only the fields the count reads. */
const cpuinfo = (cpus: { socket: number; core: number }[]) =>
  cpus.map((cpu, i) => `processor\t: ${i}\nphysical id\t: ${cpu.socket}\ncore id\t\t: ${cpu.core}\n`).join('\n');

test('physical cores: two threads of one core count once, the same core id on two sockets twice', () => {
  const smt = cpuinfo([
    { socket: 0, core: 0 },
    { socket: 0, core: 1 },
    { socket: 0, core: 0 },
    { socket: 0, core: 1 },
  ]);
  assert.equal(physicalCores(smt, 64), 2);
  const twoSockets = cpuinfo([
    { socket: 0, core: 0 },
    { socket: 1, core: 0 },
  ]);
  assert.equal(physicalCores(twoSockets, 64), 2);
  // A VM whose two vCPUs report two core ids: two, even where CPUID calls them one core's threads.
  assert.equal(
    physicalCores(
      cpuinfo([
        { socket: 0, core: 0 },
        { socket: 0, core: 1 },
      ]),
      2,
    ),
    2,
  );
});

test('physical cores: never more than the CPUs this process may use; unknown without core ids or the file', () => {
  const eight = cpuinfo(Array.from({ length: 8 }, (_, core) => ({ socket: 0, core })));
  assert.equal(physicalCores(eight, 3), 3);
  assert.equal(physicalCores('processor\t: 0\nBogoMIPS\t: 50.00\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\n', 2), undefined);
  assert.equal(physicalCores(undefined, 4), undefined);
});

test('default threads: one for a model whose prefill is tiny, one per core otherwise', () => {
  assert.equal(defaultThreads(5e9, 8), 1);
  assert.equal(defaultThreads(1.4e12, 8), 8);
  assert.equal(defaultThreads(1.4e12, undefined), undefined);
});

test('cores per worker: an equal share of the cores, at least one', () => {
  assert.equal(coresPerWorker(8, 2), 4);
  assert.equal(coresPerWorker(7, 2), 3);
  assert.equal(coresPerWorker(2, 2), 1);
  assert.equal(coresPerWorker(2, 3), 1);
  assert.equal(coresPerWorker(16, 1), 16);
});
