import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LlavaEngine } from '../../src/engine/engine';
import { WeightIndex } from '../../src/engine/weights/safetensors';
import { HookSite, ReductionHook } from '../../src/reduction/tokenState';
import { keepEveryOtherVisualToken } from '../helpers/hooks';
import { maxAbsDiff } from '../helpers/assertions';
import { referencePixels } from '../helpers/referencePixels';

/** Reference outputs of tools/reference/model.py (independent PyTorch implementation), see tools/make_fixture.py. */
interface ReferenceCase {
  image: string;
  question: string;
  prompt: string;
  input_ids: number[];
  /** tokens the decoder reads at prefill: the prompt with the image placeholder replaced by its features */
  prefill_length: number;
  num_image_tokens: number;
  greedy_tokens: number[];
  [variant: `greedy_${string}`]: number[];
}

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const MODELS = [
  'tiny-llava-llama',
  'tiny-llava-qwen2',
  'tiny-llava-llama-f16',
  'tiny-llava-qwen2-bf16',
  'tiny-llava-siglip-qwen2',
  'tiny-llava-next-mistral',
  'tiny-llava-onevision-qwen2',
];
const HOOK_VARIANTS: Record<string, HookSite> = {
  projector_even: 'projector',
  vision_even: 'vision:1',
  llm_even: 'llm:1',
};
const LOGIT_TOLERANCE = 1e-3;
/**
 * float16 keeps ~3 significant digits and logits here reach ±9; the tall image of the NeXT fixture (four tower passes,
 * 76 visual tokens) drifts most, by 0.22
 */
const HALF_PRECISION_TOLERANCE = 0.3;

for (const model of MODELS) {
  describe(`engine matches the PyTorch reference: ${model}`, () => {
    const dir = path.join(FIXTURES, model);
    const reference = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')) as {
      cases: ReferenceCase[];
      hooks: Record<string, string>;
    };
    const variants = Object.entries(HOOK_VARIANTS).filter(([variant]) => variant in reference.hooks);
    const tensors = WeightIndex.openFile(path.join(dir, 'reference.safetensors'));
    let engine: LlavaEngine;
    before(async () => {
      engine = await LlavaEngine.load(dir);
    });
    after(() => engine.dispose());

    test('float16 graphs (what GPU providers run) stay close to the reference with the same greedy tokens', async () => {
      const halfEngine = await LlavaEngine.load(dir, { precision: 'float16' });
      try {
        for (const [i, refCase] of reference.cases.entries()) {
          const result = await halfEngine.generate(
            refCase.input_ids,
            [referencePixels(tensors, i, path.join(dir, refCase.image))],
            {
              maxNewTokens: 5,
              stopTokenIds: [],
            },
          );
          assert.ok(maxAbsDiff(result.prefillLogits, tensors.readFloat32(`logits_${i}`)) <= HALF_PRECISION_TOLERANCE);
          assert.deepEqual(result.tokenIds, refCase.greedy_tokens);
        }
      } finally {
        await halfEngine.dispose();
      }
    });

    test('a prefill taken 7 tokens at a time, each chunk attending to the cache before it, matches the reference', async () => {
      const chunked = await LlavaEngine.load(dir, { prefillChunkTokens: 7 });
      try {
        for (const [i, refCase] of reference.cases.entries()) {
          const pixels = referencePixels(tensors, i, path.join(dir, refCase.image));
          const runs: { variant?: string; hooks: ReductionHook[] }[] = [{ hooks: [] }];
          if ('llm_even' in reference.hooks)
            runs.push({ variant: 'llm_even', hooks: [keepEveryOtherVisualToken('llm:1')] });
          for (const { variant, hooks } of runs) {
            const result = await chunked.generate(refCase.input_ids, [pixels], {
              maxNewTokens: 5,
              stopTokenIds: [],
              hooks,
            });
            const logits = tensors.readFloat32(variant ? `logits_${variant}_${i}` : `logits_${i}`);
            assert.ok(maxAbsDiff(result.prefillLogits, logits) <= LOGIT_TOLERANCE, `case ${i} ${variant}`);
            assert.deepEqual(result.tokenIds, variant ? refCase[`greedy_${variant}`] : refCase.greedy_tokens);
            assert.ok(result.promptTokens > 7, 'the prompt spans several chunks');
          }
        }
      } finally {
        await chunked.dispose();
      }
    });

    for (const [i, refCase] of reference.cases.entries()) {
      test(`case ${i}: prompt, token ids and pixel values`, async () => {
        const prompt = await engine.text.renderPrompt([
          { role: 'user', content: [{ type: 'image' }, { type: 'text', text: refCase.question }] },
        ]);
        assert.equal(prompt, refCase.prompt);
        assert.deepEqual(engine.text.encode(prompt), refCase.input_ids);
        const pixels = await engine.pixelValues(fs.readFileSync(path.join(dir, refCase.image)), refCase.image);
        assert.ok(maxAbsDiff(pixels.values, tensors.readFloat32(`pixel_values_${i}`)) <= 1e-6);
      });

      test(`case ${i}: prefill logits within ${LOGIT_TOLERANCE} and identical greedy tokens`, async (t) => {
        const result = await engine.generate(
          refCase.input_ids,
          [referencePixels(tensors, i, path.join(dir, refCase.image))],
          {
            maxNewTokens: 5,
            stopTokenIds: [],
          },
        );
        const difference = maxAbsDiff(result.prefillLogits, tensors.readFloat32(`logits_${i}`));
        // The README's Correctness table quotes the largest of these.
        t.diagnostic(`max |Δlogit| ${difference.toExponential(1)}`);
        assert.ok(difference <= LOGIT_TOLERANCE);
        assert.deepEqual(result.tokenIds, refCase.greedy_tokens);
        assert.equal(result.promptTokens, refCase.prefill_length);
        assert.deepEqual(result.visualTokens, [
          { original: refCase.num_image_tokens, atDecoder: refCase.num_image_tokens },
        ]);
      });

      for (const [variant, site] of variants) {
        test(`case ${i}: a keep-every-other hook at ${site} matches the reference`, async (t) => {
          const pixels = referencePixels(tensors, i, path.join(dir, refCase.image));
          const result = await engine.generate(refCase.input_ids, [pixels], {
            maxNewTokens: 5,
            stopTokenIds: [],
            hooks: [keepEveryOtherVisualToken(site)],
          });
          const difference = maxAbsDiff(result.prefillLogits, tensors.readFloat32(`logits_${variant}_${i}`));
          t.diagnostic(`max |Δlogit| ${difference.toExponential(1)}`);
          assert.ok(difference <= LOGIT_TOLERANCE);
          assert.deepEqual(result.tokenIds, refCase[`greedy_${variant}`]);
          // A vision-side hook runs once per tower pass (a tiled image's base image and tiles), a decoder one once.
          const passes = pixels.values.length / (3 * engine.config.vision.imageSize ** 2);
          assert.equal(result.steps.length, site.startsWith('llm:') ? 1 : passes);
          assert.ok(result.steps.every((step) => step.site === site));
        });
      }
    }
  });
}
