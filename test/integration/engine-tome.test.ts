import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ImagePixels, LlavaEngine } from '../../src/engine/engine';
import { referencePixels } from '../helpers/referencePixels';
import { WeightIndex } from '../../src/engine/weights/safetensors';
import { stepHook } from '../../src/reduction/paradigm';
import { planHooks, planReduction } from '../../src/reduction/registry';
import { ReductionHook } from '../../src/reduction/tokenState';
import { maxAbsDiff } from '../helpers/assertions';

const DIR = path.join(__dirname, '..', 'fixtures', 'tiny-llava-llama');

describe('ToMe in the engine (tiny-llava-llama: 6×6 patches, 3 vision layers)', () => {
  let engine: LlavaEngine;
  let inputIds: number[];
  let pixels: ImagePixels;
  before(async () => {
    engine = await LlavaEngine.load(DIR);
    const reference = JSON.parse(fs.readFileSync(path.join(DIR, 'reference.json'), 'utf8')) as {
      cases: { input_ids: number[]; image: string }[];
    };
    inputIds = reference.cases[0].input_ids;
    pixels = referencePixels(
      WeightIndex.openFile(path.join(DIR, 'reference.safetensors')),
      0,
      path.join(DIR, reference.cases[0].image),
    );
  });
  after(() => engine.dispose());

  const prefill = (hooks: readonly ReductionHook[]) =>
    engine.generate(inputIds, [pixels], { maxNewTokens: 2, stopTokenIds: [], hooks });
  const tomeHooks = (proportionalAttention: boolean) =>
    planHooks(planReduction('tome', { tokens: 9 }, engine.reductionShape, { proportionalAttention }));

  test('merges down to the budget at every vision layer that runs', async () => {
    const result = await prefill(tomeHooks(true));
    assert.deepEqual(
      result.visualTokens.map((v) => v.atDecoder),
      [9],
    );
    assert.deepEqual(
      result.steps.map((s) => s.site),
      ['vision:0', 'vision:1', 'vision:2'],
    );
    assert.ok(result.prefillLogits.every(Number.isFinite));
  });

  test("proportional attention changes the answer's logits once tokens have merged", async () => {
    const off = await prefill(tomeHooks(false));
    const on = await prefill(tomeHooks(true));
    assert.ok(maxAbsDiff(off.prefillLogits, on.prefillLogits) > 1e-4, 'the log(size) bias had no effect');
  });

  test('with every size 1 the log(size) bias is zero: identical logits with proportional attention on or off', async () => {
    const [step] = planReduction('tome', { tokens: 9 }, engine.reductionShape).steps;
    const noMerge = (proportionalAttention: boolean) => [
      stepHook({ ...step, remove: 0, needs: { ...step.needs, proportionalAttention } }),
    ];
    const off = await prefill(noMerge(false));
    const on = await prefill(noMerge(true));
    assert.equal(maxAbsDiff(off.prefillLogits, on.prefillLogits), 0);
  });
});
