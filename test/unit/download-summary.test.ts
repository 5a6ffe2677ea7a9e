import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DownloadProgress } from '../../src/hub/download';
import { DownloadSummary } from '../../src/hub/downloadSummary';

const report = (bytesFetched: number, bytesOnDiskBefore = 0): DownloadProgress => ({
  file: 'model.safetensors',
  bytesDone: bytesFetched + bytesOnDiskBefore,
  bytesTotal: 4_400_000,
  bytesFetched,
  bytesOnDiskBefore,
});

test('a download that reported progress gives the rate of what it fetched, from its first report on', () => {
  const summary = new DownloadSummary();
  summary.noteWait({ pid: 1234, host: 'here', since: '', token: '' });
  summary.noteProgress(report(0, 1_200_000), 10_000);
  summary.noteProgress(report(3_200_000, 1_200_000), 11_000);
  assert.equal(summary.completedElsewhere, false);
  assert.equal(summary.describe(12_000), '3.2 MB in 2.0 s (1.6 MB/s); 1.2 MB were on disk already');
});

test('a download with no progress at all names the process that completed the model meanwhile', () => {
  const summary = new DownloadSummary();
  assert.equal(summary.describe(), 'downloaded and verified by another process meanwhile');
  summary.noteWait({ pid: 1234, host: 'here', since: '', token: '' });
  assert.equal(summary.completedElsewhere, true);
  assert.equal(summary.describe(), 'downloaded and verified by process 1234 meanwhile');
});
