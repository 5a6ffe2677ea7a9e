import assert from 'node:assert/strict';
import * as os from 'node:os';
import { describe, test } from 'node:test';
import { availableMemory, freeAndInactive, memoryInAll } from '../../src/common/memory';

/** vm_stat on a 16 GB Mac with apps open: 98 MiB free pages, 5.1 GiB inactive ones the system hands out on demand. */
const VM_STAT = `Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                                6264.
Pages active:                            337366.
Pages inactive:                          332048.
Pages speculative:                         2437.
Pages throttled:                              0.
Pages wired down:                        135702.
Pages purgeable:                          13327.
"Translation faults":                 1014562939.
Pages copy-on-write:                   34547512.
Pages zero filled:                    455286357.
Pages reactivated:                     13473046.
Pages purged:                           2171563.
File-backed pages:                       199117.
Anonymous pages:                         472734.
Pages stored in compressor:              521083.
Pages occupied by compressor:            150519.
`;

describe('the memory the engine plans by', () => {
  test('macOS: free and inactive pages from vm_stat, where os.freemem counts only the free ones', () => {
    assert.equal(freeAndInactive(VM_STAT), (6264 + 332048) * 16384);
    assert.equal(
      availableMemory('darwin', () => VM_STAT),
      (6264 + 332048) * 16384,
    );
  });

  test("macOS without a readable vm_stat: os.freemem; other systems: Node's available memory, a container's limit counted", () => {
    const near = (available: number, expected: number) =>
      assert.ok(Math.abs(available - expected) < 2 ** 30, `${available} against ${expected}`);
    near(
      availableMemory('darwin', () => ''),
      os.freemem(),
    );
    near(
      availableMemory('linux', () => VM_STAT),
      process.availableMemory(),
    );
    assert.equal(freeAndInactive('Pages free: 12.'), undefined);
  });

  test('in all: the machine, or a lower container limit', () => {
    assert.ok(memoryInAll() > 0 && memoryInAll() <= os.totalmem());
  });
});
