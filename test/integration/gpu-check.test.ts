import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { cudaProviderInstalled, isCudaPlatform, ortBinaryFolder } from '../../src/common/cudaRuntime';
import { temporaryFolders } from '../helpers/tempFolders';

const ROOT = path.join(__dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const execFileAsync = promisify(execFile);

/** Runs bench/gpu-check.sh; resolves to its exit status and the report it wrote. */
async function gpuCheck(args: string[], out: string, env: NodeJS.ProcessEnv = process.env) {
  let status = 0;
  try {
    await execFileAsync('bash', ['bench/gpu-check.sh', ...args, '--out', out], { cwd: ROOT, env });
  } catch (error) {
    status = (error as { code: number }).code;
  }
  return { status, report: fs.readFileSync(path.join(out, 'gpu-check.md'), 'utf8') };
}

/**
 * A stand-in for nvidia-smi, the one part of the check that needs a GPU here: it names a GPU and reports this
 * process's GPU memory (its parent's pid) besides another process's larger figure.
 */
function fakeNvidiaSmi(dir: string): string {
  const script = path.join(dir, 'nvidia-smi');
  fs.writeFileSync(
    script,
    [
      '#!/bin/sh',
      'case "$1" in',
      '  --query-gpu=name,*) echo "Test GPU, 555.42, 81559, 3" ;;',
      '  --query-gpu=name) echo "Test GPU" ;;',
      '  --query-gpu=memory.free) echo 80000 ;;',
      '  --query-compute-apps=*) while :; do echo "$PPID, 1536"; echo "1, 99999"; sleep 0.1; done ;;',
      '  *) exit 9 ;;',
      'esac',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return dir;
}

describe('bench/gpu-check.sh', () => {
  const temporary = temporaryFolders();
  const cases = fs
    .readdirSync(FIXTURES)
    .filter((name) => fs.existsSync(path.join(FIXTURES, name, 'config.json')))
    .map((name) => JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'reference.json'), 'utf8')).cases.length)
    .reduce((sum: number, count: number) => sum + count, 0);

  test('on the CPU with float16 graphs: parity on every fixture, speed rows, and the GPU memory nvidia-smi reports', async () => {
    const out = temporary('gpu-check-');
    const bin = fakeNvidiaSmi(temporary('nvidia-smi-'));
    const { status, report } = await gpuCheck(
      [
        ...['--provider', 'cpu', '--precision', 'float16', '--model', 'test/fixtures/tiny-llava-llama'],
        ...['--budgets', '8,4,2', '--runs', '1', '--decode', '4'],
      ],
      out,
      { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    );
    assert.equal(status, 0, report);
    assert.match(report, /\*\*Parity: pass/);
    assert.match(report, /GPU \(nvidia-smi: name, driver, MiB total, MiB used\): Test GPU, 555\.42, 81559, 3/);
    const rows = report.split('\n').filter((line) => line.startsWith('| tiny-llava'));
    assert.equal(rows.length, 2 * cases, 'every case unreduced and with FiCoCo-V');
    for (const row of rows.filter((line) => line.includes('| none |'))) {
      const [cpuDelta, referenceDelta] = row.split('|').slice(4, 6).map(Number);
      // float16 graphs differ from float32 ones, within the half-precision tolerance
      assert.ok(cpuDelta > 0 && cpuDelta <= 0.3 && referenceDelta <= 0.3, row);
      assert.match(row, /\| yes \| yes \| pass \|$/);
    }
    // With the same patches kept, tokens that part are a near tie only where the CPU's logits put the two within 0.3.
    for (const row of rows.filter((line) => line.includes('| **no**') && / \| yes \| [^|]+ \|$/.test(line))) {
      const margin = Number(/CPU margin ([\d.e+-]+)\)/.exec(row)?.[1]);
      assert.equal(row.endsWith('| near tie |'), margin <= 0.3, row);
    }
    assert.match(report, /## Speed/);
    for (const budget of [8, 4, 2]) assert.match(report, new RegExp(`\\| ficoco-v \\| ${budget} \\| ${budget} \\|`));
    assert.match(report, /Peak GPU memory of this process.*: 1536 MiB\./);
  });

  test('a provider that does not load stops the check with its reason', { skip: skipWhenCudaLoads() }, async () => {
    const out = temporary('gpu-check-');
    const { status, report } = await gpuCheck(['--provider', 'cuda', '--model', 'test/fixtures/tiny-llava-llama'], out);
    assert.equal(status, 2);
    assert.match(report, /\*\*The cuda provider did not load\*\*: cuda could not be used \(.+\)/);
    assert.doesNotMatch(report, /## Parity|## Speed/);
  });
});

function skipWhenCudaLoads(): string | false {
  const binaries = ortBinaryFolder(path.dirname(require.resolve('onnxruntime-node/package.json')));
  return isCudaPlatform() && cudaProviderInstalled(binaries)
    ? "needs a machine where ONNX Runtime's CUDA provider is not installed"
    : false;
}
