import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findBuiltinModel } from '../../src/hub/presets';
import { type AnswerStats, LlavaEngine } from '../../src/engine/engine';
import { WeightIndex } from '../../src/engine/weights/safetensors';
import { maxAbsDiff } from '../helpers/assertions';
import { runCli } from '../helpers/cli';

/** Reference outputs of tools/reference/model.py on evaluation items, written by tools/reference_builtin.py. */
interface BuiltinCase {
  image: string;
  question: string;
  type: string;
  expected_answer: string;
  prompt: string;
  input_ids: number[];
  greedy_tokens: number[];
  greedy_text: string;
}

const REFERENCE_DIR = path.join(__dirname, '..', 'fixtures', 'builtin-reference');
const LOGIT_TOLERANCE = 1e-3;
const modelDir = findBuiltinModel(__dirname);

describe(
  'the built-in model matches the PyTorch reference and answers evaluation questions',
  { skip: modelDir === undefined && 'needs models/tiny-llava-screens (tools/train_tiny_llava.py)' },
  () => {
    const reference = JSON.parse(fs.readFileSync(path.join(REFERENCE_DIR, 'reference.json'), 'utf8')) as {
      cases: BuiltinCase[];
    };
    const tensors = WeightIndex.openFile(path.join(REFERENCE_DIR, 'reference.safetensors'));
    let engine: LlavaEngine;
    before(async () => {
      engine = await LlavaEngine.load(modelDir!);
    });
    after(() => engine.dispose());

    test('the reference covers every question type', () => {
      assert.deepEqual(
        new Set(reference.cases.map((c) => c.type)),
        new Set(['arrow', 'colour', 'count', 'label', 'position', 'title']),
      );
    });

    for (const [i, refCase] of reference.cases.entries()) {
      test(
        `case ${i} (${refCase.type}): prompt, token ids, pixels, prefill logits within ${LOGIT_TOLERANCE}, ` +
          `identical greedy answer`,
        async () => {
          const prompt = await engine.text.renderPrompt([
            { role: 'user', content: [{ type: 'image' }, { type: 'text', text: refCase.question }] },
          ]);
          assert.equal(prompt, refCase.prompt);
          assert.deepEqual(engine.text.encode(prompt), refCase.input_ids);
          const imagePath = path.join(REFERENCE_DIR, refCase.image);
          const pixels = await engine.pixelValues(fs.readFileSync(imagePath), imagePath);
          assert.ok(maxAbsDiff(pixels.values, tensors.readFloat32(`pixel_values_${i}`)) <= 1e-6);
          const result = await engine.generate(refCase.input_ids, [pixels], {
            maxNewTokens: refCase.greedy_tokens.length,
          });
          assert.ok(maxAbsDiff(result.prefillLogits, tensors.readFloat32(`logits_${i}`)) <= LOGIT_TOLERANCE);
          assert.deepEqual(result.tokenIds, refCase.greedy_tokens);
        },
      );
    }

    test('ask() answers an evaluation image the way the reference does, as text', async () => {
      for (const refCase of reference.cases.slice(0, 4)) {
        const imagePath = path.join(REFERENCE_DIR, refCase.image);
        const answer = await engine.ask({
          question: refCase.question,
          images: [{ bytes: fs.readFileSync(imagePath), name: path.basename(imagePath) }],
          maxNewTokens: 8,
        });
        assert.equal(answer.text.trim(), refCase.greedy_text);
        assert.equal(answer.stopReason, 'stop-token');
      }
    });

    test('ficoco ask --json prints one JSON object: the reference answer, why it stopped, and its stats', async () => {
      const [refCase] = reference.cases;
      const image = path.join(REFERENCE_DIR, refCase.image);
      const args = ['ask', '--json', '--image', image, '--method', 'ficoco-v', '--budget', '16', refCase.question];
      const { stdout } = await runCli(args);
      assert.equal(stdout.split('\n').length, 2, 'one line, then nothing');
      const printed = JSON.parse(stdout) as {
        answer: string;
        stopReason: string;
        stats: AnswerStats;
        warmUpMs: number;
      };
      const answer = await engine.ask({
        question: refCase.question,
        images: [{ bytes: fs.readFileSync(image), name: path.basename(image) }],
        reduction: { method: 'ficoco-v', budget: { tokens: 16 } },
      });
      assert.equal(printed.answer, answer.text);
      assert.equal(printed.stopReason, answer.stopReason);
      assert.deepEqual(printed.stats.visualTokens, [{ original: 144, atDecoder: 16 }]);
      assert.equal(printed.stats.patchFates?.[0].patches.length, 144);
      assert.ok(printed.warmUpMs >= 0);
    });

    test('ficoco ask --quantize names what it quantized under the stats', async () => {
      // A copy: the cache is written beside the weights.
      const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-builtin-int8-'));
      try {
        fs.cpSync(modelDir!, copy, { recursive: true });
        const image = path.join(REFERENCE_DIR, reference.cases[0].image);
        const { stdout } = await runCli([
          'ask',
          '--model',
          copy,
          '--quantize',
          'int8',
          '--image',
          image,
          'What is it?',
        ]);
        assert.match(stdout, /\nweights {9}int8 \(decoder and vision tower\)\n/);
      } finally {
        fs.rmSync(copy, { recursive: true, force: true });
      }
    });
  },
);
