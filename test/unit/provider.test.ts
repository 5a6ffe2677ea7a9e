import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ElemType } from '../../src/engine/graph/builder';
import { PROVIDERS, computeTypeFor, providerCandidates, type ProviderSetting } from '../../src/engine/runtime/provider';

const SETTINGS: ProviderSetting[] = ['auto', ...PROVIDERS];
const PLATFORMS: { platform: NodeJS.Platform; cuda: boolean; label: string }[] = [
  { platform: 'linux', cuda: true, label: 'linux with the CUDA provider library' },
  { platform: 'linux', cuda: false, label: 'linux without the CUDA provider library' },
  { platform: 'win32', cuda: false, label: 'win32' },
  { platform: 'darwin', cuda: false, label: 'darwin' },
];

describe('providerCandidates', () => {
  for (const setting of SETTINGS) {
    for (const { platform, cuda, label } of PLATFORMS) {
      test(`${setting} on ${label}: ends with cpu, no duplicates${setting !== 'auto' ? ', the explicit provider first' : ''}`, () => {
        const candidates = providerCandidates(setting, platform, cuda);
        assert.equal(candidates.at(-1), 'cpu');
        assert.equal(new Set(candidates).size, candidates.length);
        for (const provider of candidates) assert.ok((PROVIDERS as readonly string[]).includes(provider));
        if (setting !== 'auto') assert.equal(candidates[0], setting);
      });
    }
  }

  test('an explicit provider is tried regardless of platform, then cpu', () => {
    assert.deepEqual(providerCandidates('cuda', 'win32', false), ['cuda', 'cpu']);
    assert.deepEqual(providerCandidates('dml', 'linux', true), ['dml', 'cpu']);
    assert.deepEqual(providerCandidates('coreml', 'linux', false), ['coreml', 'cpu']);
    assert.deepEqual(providerCandidates('webgpu', 'darwin', false), ['webgpu', 'cpu']);
  });

  test('cpu means cpu only, everywhere', () => {
    for (const { platform, cuda } of PLATFORMS) assert.deepEqual(providerCandidates('cpu', platform, cuda), ['cpu']);
  });

  test('auto: cuda on linux only when its library is present', () => {
    assert.deepEqual(providerCandidates('auto', 'linux', true), ['cuda', 'cpu']);
    assert.deepEqual(providerCandidates('auto', 'linux', false), ['cpu']);
  });

  test('auto: DirectML on Windows, CoreML on macOS (whatever the CUDA flag says)', () => {
    assert.deepEqual(providerCandidates('auto', 'win32', false), ['dml', 'cpu']);
    assert.deepEqual(providerCandidates('auto', 'win32', true), ['dml', 'cpu']);
    assert.deepEqual(providerCandidates('auto', 'darwin', false), ['coreml', 'cpu']);
    assert.deepEqual(providerCandidates('auto', 'darwin', true), ['coreml', 'cpu']);
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
