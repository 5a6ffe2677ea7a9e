import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { ElemType, GraphBuilder } from '../../src/engine/graph/builder';
import { CUDA_RUNTIME_LIBRARIES, missingCudaRuntime } from '../../src/common/cudaRuntime';
import { missingLibraries } from '../../src/common/sharedLibraries';
import { vulkanMissing } from '../../src/common/vulkan';
import type * as ort from 'onnxruntime-node';
import {
  MachineProviders,
  PROVIDERS,
  computeTypeFor,
  cudaAdvice,
  ortMessage,
  probeProviders,
  providerCandidates,
  SessionFactory,
  sessionOptions,
  thisMachine,
  type ProviderSetting,
} from '../../src/engine/runtime/provider';

const SETTINGS: ProviderSetting[] = ['auto', ...PROVIDERS];
/** What the npm package's bindings report per platform (listSupportedBackends, bundled ones). */
const MACHINES: { label: string; machine: MachineProviders }[] = [
  {
    label: 'linux x64 with the CUDA provider libraries',
    machine: { platform: 'linux', bundled: new Set(['cpu', 'webgpu']), cudaLibraries: true, webgpuBackend: true },
  },
  {
    label: 'linux x64 without them',
    machine: { platform: 'linux', bundled: new Set(['cpu', 'webgpu']), cudaLibraries: false, webgpuBackend: true },
  },
  {
    label: 'linux x64 without a Vulkan loader',
    machine: { platform: 'linux', bundled: new Set(['cpu', 'webgpu']), cudaLibraries: true, webgpuBackend: false },
  },
  {
    label: 'linux arm64',
    machine: { platform: 'linux', bundled: new Set(['cpu']), cudaLibraries: false, webgpuBackend: false },
  },
  {
    label: 'win32',
    machine: {
      platform: 'win32',
      bundled: new Set(['cpu', 'dml', 'webgpu']),
      cudaLibraries: false,
      webgpuBackend: true,
    },
  },
  {
    label: 'darwin',
    machine: {
      platform: 'darwin',
      bundled: new Set(['cpu', 'coreml', 'webgpu']),
      cudaLibraries: false,
      webgpuBackend: true,
    },
  },
];
const machine = (label: string) => MACHINES.find((m) => m.label === label)!.machine;

describe('providerCandidates', () => {
  for (const setting of SETTINGS) {
    for (const { label, machine } of MACHINES) {
      test(`${setting} on ${label}: ends with cpu, no duplicates${setting !== 'auto' ? ', the explicit provider first' : ''}`, () => {
        const candidates = providerCandidates(setting, machine);
        assert.equal(candidates.at(-1), 'cpu');
        assert.equal(new Set(candidates).size, candidates.length);
        for (const provider of candidates) assert.ok((PROVIDERS as readonly string[]).includes(provider));
        if (setting !== 'auto') assert.equal(candidates[0], setting);
      });
    }
  }

  test('an explicit provider is tried regardless of platform, then cpu (its failure names the reason)', () => {
    assert.deepEqual(providerCandidates('cuda', machine('win32')), ['cuda', 'cpu']);
    assert.deepEqual(providerCandidates('dml', machine('linux x64 with the CUDA provider libraries')), ['dml', 'cpu']);
    assert.deepEqual(providerCandidates('coreml', machine('linux arm64')), ['coreml', 'cpu']);
    assert.deepEqual(providerCandidates('webgpu', machine('darwin')), ['webgpu', 'cpu']);
  });

  test('cpu means cpu only, everywhere', () => {
    for (const { machine } of MACHINES) assert.deepEqual(providerCandidates('cpu', machine), ['cpu']);
  });

  test('auto on linux: CUDA when its libraries are installed, then WebGPU where the binding has it', () => {
    assert.deepEqual(providerCandidates('auto', machine('linux x64 with the CUDA provider libraries')), [
      'cuda',
      'webgpu',
      'cpu',
    ]);
    assert.deepEqual(providerCandidates('auto', machine('linux x64 without them')), ['webgpu', 'cpu']);
    assert.deepEqual(providerCandidates('auto', machine('linux arm64')), ['cpu']);
  });

  test('auto on linux leaves WebGPU out without a Vulkan loader; asked for by name, it is still tried', () => {
    const noVulkan = machine('linux x64 without a Vulkan loader');
    assert.deepEqual(providerCandidates('auto', noVulkan), ['cuda', 'cpu']);
    assert.deepEqual(providerCandidates('webgpu', noVulkan), ['webgpu', 'cpu']);
  });

  test('auto: DirectML on Windows, CoreML on macOS, each before WebGPU', () => {
    assert.deepEqual(providerCandidates('auto', machine('win32')), ['dml', 'webgpu', 'cpu']);
    assert.deepEqual(providerCandidates('auto', machine('darwin')), ['coreml', 'webgpu', 'cpu']);
  });

  test('this machine: the binding lists what it has, and the CUDA flag follows the library files', () => {
    const here = thisMachine();
    assert.ok(here.bundled.has('cpu'));
    assert.equal(here.platform, process.platform);
    assert.equal(typeof here.cudaLibraries, 'boolean');
  });

  test(
    'this machine, without Vulkan: auto does not try WebGPU, and WebGPU asked for by name says why it failed',
    {
      skip:
        (process.platform !== 'linux' || !thisMachine().bundled.has('webgpu') || thisMachine().webgpuBackend) &&
        'needs Linux with WebGPU in the binding and without a Vulkan loader or driver',
    },
    async () => {
      assert.ok(!providerCandidates('auto', thisMachine()).includes('webgpu'));
      const { candidates, failures } = await probeProviders(['webgpu', 'cpu']);
      assert.deepEqual(candidates, ['cpu']);
      assert.match(
        failures[0]!,
        /^webgpu could not be used \(.*; WebGPU needs Vulkan on Linux, and no (libvulkan\.so\.1|Vulkan driver) is installed.*\)$/s,
      );
    },
  );
});

describe('sessionOptions', () => {
  const base = { weightsFolder: '/models/llava' };
  const provider = (options: ort.InferenceSession.SessionOptions) => options.executionProviders![0];

  test('every provider gets exactly one execution provider, full graph optimisation and the weights folder', () => {
    for (const name of PROVIDERS) {
      const options = sessionOptions(name, base);
      assert.equal(options.executionProviders!.length, 1, name);
      assert.equal(options.graphOptimizationLevel, 'all');
      assert.equal(
        (options.extra as { session: Record<string, unknown> }).session.model_external_initializers_file_folder_path,
        '/models/llava',
      );
    }
  });

  test('CUDA and DirectML run on device 0; DirectML without memory patterns, sequentially', () => {
    assert.deepEqual(provider(sessionOptions('cuda', base)), { name: 'cuda', deviceId: 0 });
    const dml = sessionOptions('dml', base);
    assert.deepEqual(provider(dml), { name: 'dml', deviceId: 0 });
    assert.equal(dml.enableMemPattern, false);
    assert.equal(dml.executionMode, 'sequential');
    assert.equal(sessionOptions('cuda', base).enableMemPattern, undefined);
  });

  test('a session whose inputs change shape from run to run plans no memory pattern; others keep the default', () => {
    for (const name of PROVIDERS) {
      assert.equal(sessionOptions(name, { ...base, shapesVary: true }).enableMemPattern, false, name);
      if (name !== 'dml') assert.equal(sessionOptions(name, base).enableMemPattern, undefined, name);
    }
  });

  test('CoreML builds an ML Program (float16-capable); WebGPU and CPU by name', () => {
    assert.deepEqual(provider(sessionOptions('coreml', base)), { name: 'coreml', coreMlFlags: 0x010 });
    assert.equal(provider(sessionOptions('webgpu', base)), 'webgpu');
    assert.equal(provider(sessionOptions('cpu', base)), 'cpu');
  });

  test('GPU providers log quietly (a failed load is reported once, by the engine); threads only when asked', () => {
    assert.equal(sessionOptions('cuda', base).logSeverityLevel, 4);
    assert.equal(sessionOptions('cpu', base).logSeverityLevel, 2);
    assert.equal(sessionOptions('cpu', base).intraOpNumThreads, undefined);
    assert.equal(sessionOptions('cpu', { ...base, threads: 2 }).intraOpNumThreads, 2);
  });

  test("idle threads sleep unless the session runs back to back (a whole decoder's steps)", () => {
    const spinning = (options: ort.InferenceSession.SessionOptions) =>
      (options.extra as { session: { intra_op: { allow_spinning: string } } }).session.intra_op.allow_spinning;
    assert.equal(spinning(sessionOptions('cpu', base)), '0');
    assert.equal(spinning(sessionOptions('cpu', { ...base, spinning: true })), '1');
  });
});

describe('ortMessage', () => {
  test('a failed check in ORT reads as its message, without source location and condition', () => {
    // What onnxruntime-node 1.30 throws for WebGPU on a machine without an adapter.
    const thrown = new Error(
      '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 ' +
        'onnxruntime::webgpu::WebGpuContext::Initialize(const ' +
        'onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == ' +
        'wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported ' +
        'adapters\n',
    );
    assert.equal(ortMessage(thrown), 'Failed to get a WebGPU adapter: No supported adapters');
  });

  test('other errors keep their first line', () => {
    assert.equal(
      ortMessage(new Error('OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library\nmore')),
      'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library',
    );
    assert.equal(
      ortMessage('no available backend found. ERR: [dml] backend not found.'),
      'no available backend found. ERR: [dml] backend not found.',
    );
  });
});

describe("ONNX Runtime's log, whichever provider a process loads first", () => {
  // Its default logger is made once per process, with the first session: each order runs in a process of its own.
  const child = path.join(__dirname, '..', 'helpers', 'ortLogChild.ts');
  const run = (order: 'gpu-first' | 'cpu-first') =>
    promisify(execFile)(process.execPath, ['--import', 'tsx', child, order], { cwd: path.join(__dirname, '..', '..') });

  test('a CPU session after a GPU provider was tried still shows ORT warnings', async () => {
    const { stderr } = await run('gpu-first');
    assert.match(stderr, /Removing initializer 'unused'/);
  });

  test("a GPU provider that fails after a CPU session is said once, without ORT's own error line", async (t) => {
    const { stdout, stderr } = await run('cpu-first');
    const probe = JSON.parse(stdout) as { failures: string[] };
    if (probe.failures.length === 0) return t.skip('needs a machine where the CUDA provider fails to load');
    assert.match(stderr, /Removing initializer 'unused'/, 'the CPU session still warns');
    assert.doesNotMatch(stderr, /\[E:onnxruntime/);
  });
});

describe('cudaAdvice', () => {
  const driver = () => true;

  test('says to install the provider libraries when they are missing', () => {
    assert.match(
      cudaAdvice(machine('linux x64 without them'), () => [], driver),
      /CUDA provider libraries are not installed: run "FiCoCo: Install CUDA Provider"/,
    );
  });

  test('without an NVIDIA driver, says so instead of offering installs that would not help', () => {
    assert.equal(
      cudaAdvice(
        machine('linux x64 without them'),
        () => ['libcudnn.so.9'],
        () => false,
      ),
      '; no NVIDIA driver is loaded on this machine (CUDA needs an NVIDIA GPU on Linux x64)',
    );
  });

  test('names the CUDA 12 / cuDNN 9 libraries the loader cannot find', () => {
    const installed = machine('linux x64 with the CUDA provider libraries');
    assert.equal(
      cudaAdvice(installed, () => [], driver),
      '',
    );
    assert.match(
      cudaAdvice(installed, () => ['libcudnn.so.9'], driver),
      /CUDA 12 and cuDNN 9 are needed and libcudnn\.so\.9 is not found/,
    );
  });
});

describe('computeTypeFor', () => {
  test('GPU providers compute in float16', () => {
    assert.equal(computeTypeFor('cuda'), ElemType.float16);
    assert.equal(computeTypeFor('dml'), ElemType.float16);
    assert.equal(computeTypeFor('webgpu'), ElemType.float16);
  });

  test('cpu and coreml compute in float32', () => {
    assert.equal(computeTypeFor('cpu'), ElemType.float32);
    assert.equal(computeTypeFor('coreml'), ElemType.float32);
  });
});

describe('vulkanMissing', () => {
  const LOADER = '\tlibvulkan.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libvulkan.so.1\n';
  /** An environment whose manifest folders are all inside `root`. */
  const confined = (root: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    HOME: root,
    XDG_CONFIG_DIRS: path.join(root, 'etc-xdg'),
    XDG_DATA_DIRS: path.join(root, 'share'),
    ...extra,
  });

  test(
    'the loader alone is not enough: a driver manifest must be in one of the folders the loader reads',
    {
      skip:
        ['/etc', '/usr/local/etc'].some((dir) => fs.existsSync(path.join(dir, 'vulkan', 'icd.d'))) &&
        'needs a machine without Vulkan drivers in /etc/vulkan/icd.d or /usr/local/etc/vulkan/icd.d (they would answer)',
    },
    () => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-vulkan-'));
      try {
        assert.equal(vulkanMissing(confined(root), ''), 'no libvulkan.so.1 is installed');
        assert.match(
          vulkanMissing(confined(root), LOADER)!,
          /^no Vulkan driver is installed \(no manifest in .*share\/vulkan\/icd\.d/,
        );
        const icd = path.join(root, 'share', 'vulkan', 'icd.d');
        fs.mkdirSync(icd, { recursive: true });
        fs.writeFileSync(path.join(icd, 'README'), 'not a manifest');
        assert.notEqual(vulkanMissing(confined(root), LOADER), undefined);
        fs.writeFileSync(path.join(icd, 'nvidia_icd.json'), '{}');
        assert.equal(vulkanMissing(confined(root), LOADER), undefined);
        // An empty XDG variable counts as unset, as the loader takes it: the home's own folder is searched.
        const own = path.join(root, '.local', 'share', 'vulkan', 'icd.d');
        fs.mkdirSync(own, { recursive: true });
        fs.renameSync(path.join(icd, 'nvidia_icd.json'), path.join(own, 'nvidia_icd.json'));
        assert.equal(vulkanMissing(confined(root, { XDG_DATA_HOME: '' }), LOADER), undefined);
        assert.equal(vulkanMissing(confined(root), ''), 'no libvulkan.so.1 is installed');
      } finally {
        fs.rmSync(root, { recursive: true, force: true });
      }
    },
  );

  test('a driver named by VK_DRIVER_FILES or VK_ICD_FILENAMES is taken as there', () => {
    const root = path.join(os.tmpdir(), 'ficoco-vulkan-nowhere');
    for (const name of ['VK_DRIVER_FILES', 'VK_ICD_FILENAMES', 'VK_ADD_DRIVER_FILES'])
      assert.equal(vulkanMissing(confined(root, { [name]: '/opt/gpu/icd.json' }), LOADER), undefined, name);
  });

  test("a 32-bit loader in ldconfig's cache does not count for a 64-bit process", () => {
    const i386 = '\tlibvulkan.so.1 (libc6) => /usr/lib/i386-linux-gnu/libvulkan.so.1\n';
    assert.deepEqual(missingLibraries(['libvulkan.so.1'], [], {}, i386, 'x64'), ['libvulkan.so.1']);
    assert.deepEqual(missingLibraries(['libvulkan.so.1'], [], {}, LOADER, 'x64'), []);
    assert.deepEqual(missingLibraries(['libvulkan.so.1'], [], {}, LOADER, 'arm64'), ['libvulkan.so.1']);
    assert.deepEqual(missingLibraries(['libvulkan.so.1'], [], {}, i386, 'ia32'), []);
  });
});

describe('missingCudaRuntime', () => {
  const LDCONFIG = [
    "1234 libs found in cache `/etc/ld.so.cache'",
    '\tlibcudart.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.12',
    '\tlibcublas.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcublas.so.12',
    '\tlibcublasLt.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcublasLt.so.12',
    '\tlibcufft.so.11 (libc6,x86-64) => /usr/local/cuda/lib64/libcufft.so.11',
    '\tlibcurand.so.10 (libc6,x86-64) => /usr/local/cuda/lib64/libcurand.so.10',
  ].join('\n');

  test('reads the loader cache: cuDNN 9 missing is named', () => {
    assert.deepEqual(missingCudaRuntime({}, LDCONFIG), ['libcudnn.so.9']);
    assert.deepEqual(
      missingCudaRuntime({}, `${LDCONFIG}\n\tlibcudnn.so.9 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcudnn.so.9`),
      [],
    );
  });

  test('looks in LD_LIBRARY_PATH and CUDA_PATH too', () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-cuda-libs-'));
    for (const library of CUDA_RUNTIME_LIBRARIES) fs.writeFileSync(path.join(folder, library), '');
    try {
      assert.deepEqual(missingCudaRuntime({ LD_LIBRARY_PATH: `/nowhere:${folder}` }, ''), []);
      const outsideDefaultFolder = CUDA_RUNTIME_LIBRARIES.filter(
        (library) => !fs.existsSync(path.join('/usr/local/cuda/lib64', library)),
      );
      assert.deepEqual(missingCudaRuntime({}, ''), outsideDefaultFolder);
    } finally {
      fs.rmSync(folder, { recursive: true });
    }
  });
});

describe('falling back to the CPU', () => {
  const square = () => {
    const g = new GraphBuilder('square', ElemType.float32);
    const x = g.input('x', ElemType.float32, [4]);
    g.output('y', g.op('Mul', [x, x], 'y'), ElemType.float32, [4]);
    return g.build();
  };

  test(
    'a GPU provider that fails at its first session lets the load refuse the CPU first (memory)',
    { skip: thisMachine().cudaLibraries && 'needs a machine without the CUDA provider libraries, where CUDA fails' },
    async () => {
      const reasons: string[][] = [];
      const factory = new SessionFactory({
        weightsFolder: os.tmpdir(),
        candidates: ['cuda', 'cpu'],
        threads: 1,
        beforeCpuFallback: (failures) => {
          reasons.push([...failures]);
          throw new Error('too big for the CPU');
        },
      });
      await assert.rejects(factory.create(square), /too big for the CPU/);
      assert.equal(factory.provider, undefined, 'no session was made');
      assert.equal(reasons.length, 1);
      assert.match(reasons[0]![0]!, /^cuda could not be used/);
    },
  );

  test('a load that starts on the CPU is not asked again', async () => {
    let asked = 0;
    const factory = new SessionFactory({
      weightsFolder: os.tmpdir(),
      candidates: ['cpu'],
      threads: 1,
      beforeCpuFallback: () => asked++,
    });
    await (await factory.create(square)).release();
    assert.equal(asked, 0);
    assert.equal(factory.provider, 'cpu');
  });
});
