import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ARCH_PRESETS,
  archForImage,
  archPreset,
  FlopsError,
  flopsRows,
  flopsTable,
  kvBytesPerToken,
  kvCacheBytes,
  llmLayerFlops,
  llmPrefillFlops,
  LlmArch,
  projectorFlops,
  reducedBeforeLlmShape,
  runFlops,
  unreducedShape,
  visionLayerFlops,
  visionTowerFlops,
} from '../../src/flops/index';
import { parseModelConfig } from '../../src/engine/models/registry';
import { flopsArchOf } from '../../src/engine/models/flopsArch';

const VICUNA_7B: LlmArch = {
  hiddenSize: 4096,
  intermediateSize: 11008,
  layers: 32,
  heads: 32,
  kvHeads: 32,
  headDim: 128,
};
const VICUNA_13B: LlmArch = {
  hiddenSize: 5120,
  intermediateSize: 13824,
  layers: 40,
  heads: 40,
  kvHeads: 40,
  headDim: 128,
};
const tflops = (flops: number): number => flops / 1e12;
const every = (arch: LlmArch, tokens: number): number[] => new Array<number>(arch.layers).fill(tokens);

function near(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} is not within ${tolerance} of ${expected}`);
}

describe('LLM prefill FLOPs (LLM-Viewer accounting, as the FiCoCo paper reports TFLOPs)', () => {
  it('one layer is 2N(4D² + 3DH) + 4N²D + 5hN² + 18ND for MHA', () => {
    const [n, d, h, heads] = [636, 4096, 11008, 32];
    assert.equal(
      llmLayerFlops(VICUNA_7B, n).total,
      2 * n * (4 * d * d + 3 * d * h) + 4 * n * n * d + 5 * heads * n * n + 18 * n * d,
    );
  });

  it("reproduces the paper's Vicuna-7B numbers with 60 text tokens", () => {
    for (const [tokens, expected] of [
      [636, 8.45],
      [252, 3.3],
      [188, 2.45],
      [124, 1.61],
    ] as const) {
      near(tflops(llmPrefillFlops(VICUNA_7B, every(VICUNA_7B, tokens))), expected, 0.01, `${tokens} tokens`);
    }
    // The budgets as the paper labels them: 576 / 192 / 128 / 64 visual tokens → 8.5 / 3.3 / 2.4–2.5 / 1.5–1.6.
    for (const [visual, expected] of [
      [576, 8.5],
      [192, 3.3],
      [128, 2.45],
      [64, 1.55],
    ] as const) {
      near(tflops(llmPrefillFlops(VICUNA_7B, every(VICUNA_7B, visual + 60))), expected, 0.1, `${visual} visual tokens`);
    }
  });

  it('reproduces Vicuna-13B (576 + 512 tokens) and LLaVA-NeXT-7B (2880 + 60 tokens)', () => {
    near(tflops(llmPrefillFlops(VICUNA_13B, every(VICUNA_13B, 1088))), 28.59, 0.01, '13B');
    near(tflops(llmPrefillFlops(VICUNA_7B, every(VICUNA_7B, 2940))), 42.66, 0.01, 'NeXT-7B');
  });

  it('sums per-layer token counts: reduction at layer 2 to 64 visual = layers 0–1 at 636 + layers 2–31 at 124', () => {
    const list = [636, 636, ...new Array<number>(30).fill(124)];
    const expected = 2 * llmLayerFlops(VICUNA_7B, 636).total + 30 * llmLayerFlops(VICUNA_7B, 124).total;
    assert.equal(llmPrefillFlops(VICUNA_7B, list), expected);
    assert.ok(llmPrefillFlops(VICUNA_7B, list) > llmPrefillFlops(VICUNA_7B, every(VICUNA_7B, 124)));
  });

  it('an in-layer reduction (between attention and MLP) only shortens the MLP half', () => {
    const full = llmLayerFlops(VICUNA_7B, 636);
    const split = llmLayerFlops(VICUNA_7B, 636, 124);
    const after = llmLayerFlops(VICUNA_7B, 124);
    assert.equal(
      split.attentionProjections + split.attentionScores + split.softmax,
      full.attentionProjections + full.attentionScores + full.softmax,
    );
    assert.equal(split.mlp, after.mlp);
    assert.equal(split.elementwise, (8 * 636 + 10 * 124) * 4096);
  });

  it('a causal count keeps the N(N + 1)/2 query-key pairs the mask leaves, and nothing else changes', () => {
    const n = 636;
    const all = llmLayerFlops(VICUNA_7B, n);
    const causal = llmLayerFlops(VICUNA_7B, n, n, 'causal');
    assert.equal(causal.attentionScores, 4 * ((n * (n + 1)) / 2) * 4096);
    assert.equal(causal.softmax, 5 * 32 * ((n * (n + 1)) / 2));
    assert.equal(causal.attentionProjections, all.attentionProjections);
    assert.equal(causal.mlp + causal.elementwise, all.mlp + all.elementwise);
    // One token sees only itself either way.
    assert.equal(llmLayerFlops(VICUNA_7B, 1, 1, 'causal').total, llmLayerFlops(VICUNA_7B, 1).total);
    const arch = archPreset('llava-1.5-7b');
    const shape = unreducedShape(arch, { images: 1, textTokens: 60 });
    assert.equal(runFlops(arch, shape, 'causal').vision, runFlops(arch, shape).vision);
    assert.equal(runFlops(arch, shape).llm - runFlops(arch, shape, 'causal').llm, 32 * (all.total - causal.total));
  });

  it('GQA reduces only the k/v projection term', () => {
    const gqa: LlmArch = { ...VICUNA_7B, kvHeads: 8 };
    const n = 300;
    const a = llmLayerFlops(VICUNA_7B, n);
    const b = llmLayerFlops(gqa, n);
    assert.equal(a.attentionProjections - b.attentionProjections, 2 * n * 2 * 4096 * (4096 - 1024));
    assert.equal(a.attentionScores, b.attentionScores);
    assert.equal(a.softmax, b.softmax);
    assert.equal(a.mlp, b.mlp);
    assert.equal(a.elementwise, b.elementwise);
  });

  it('honours an explicit head_dim (q/o widths and attention scale with heads·head_dim)', () => {
    const arch: LlmArch = { hiddenSize: 48, intermediateSize: 96, layers: 1, heads: 4, kvHeads: 2, headDim: 12 };
    const wide: LlmArch = { ...arch, headDim: 16 };
    const n = 10;
    const [d, q, kv] = [48, 64, 32];
    assert.equal(llmLayerFlops(wide, n).attentionProjections, 2 * n * (d * q + 2 * d * kv + q * d));
    assert.equal(llmLayerFlops(wide, n).attentionScores, 4 * n * n * q);
    assert.equal(llmLayerFlops(arch, n).attentionProjections, 2 * n * 4 * d * d - 2 * n * 2 * d * (d - 24));
  });

  it('KV cache: 524,288 bytes per token for Vicuna-7B fp16; per-layer lengths add up', () => {
    assert.equal(kvBytesPerToken(VICUNA_7B), 524_288);
    assert.equal(kvCacheBytes(VICUNA_7B, every(VICUNA_7B, 636)), 524_288 * 636);
    near(kvCacheBytes(VICUNA_7B, every(VICUNA_7B, 124)) / 1e6, 65.0, 0.05, '124 tokens in MB'); // paper Table 10
    const list = [636, 636, ...new Array<number>(30).fill(124)];
    assert.equal(kvCacheBytes(VICUNA_7B, list), (2 * 636 + 30 * 124) * 16_384);
    assert.equal(kvBytesPerToken({ ...VICUNA_7B, kvHeads: 8 }, 1), 2 * 32 * 8 * 128);
  });

  it('rejects a token list of the wrong length or with bad counts', () => {
    assert.throws(
      () => llmPrefillFlops(VICUNA_7B, [636]),
      (e: unknown) => e instanceof FlopsError && /1 entries; the decoder has 32 layers/.test(e.message),
    );
    assert.throws(() => llmPrefillFlops(VICUNA_7B, [...every(VICUNA_7B, 10).slice(1), -1]), FlopsError);
    assert.throws(() => llmLayerFlops(VICUNA_7B, 10.5), FlopsError);
    assert.throws(() => llmLayerFlops(VICUNA_7B, 10, 11), /exceed/);
  });
});

describe('vision tower and projector FLOPs', () => {
  const clip = ARCH_PRESETS['llava-1.5-7b'].vision;

  it('a CLIP-L/14-336 layer at 577 tokens is 15,922,808,912 FLOPs', () => {
    // 2·577·(4·1024² + 2·1024·4096) + 4·577²·1024 + 5·16·577² + (2·7 + 2)·577·1024 + 577·4096
    //   = 14,520,680,448 + 1,363,677,184 + 26,634,320 + 9,453,568 + 2,363,392 = 15,922,808,912 (≈ 15.9 GFLOPs)
    assert.equal(visionLayerFlops(clip, 577).total, 15_922_808_912);
    const parts = visionLayerFlops(clip, 577);
    assert.equal(parts.attentionProjections + parts.mlp, 2 * 577 * (4 * 1024 ** 2 + 2 * 1024 * 4096));
    assert.equal(parts.attentionScores, 4 * 577 ** 2 * 1024);
    assert.equal(parts.softmax, 5 * 16 * 577 ** 2);
  });

  it('the tower adds patch embedding + position add + pre-LayerNorm once per image', () => {
    const embed = 2 * 576 * 3 * 14 * 14 * 1024 + 8 * 577 * 1024;
    assert.equal(visionTowerFlops(clip, new Array<number>(23).fill(577)), embed + 23 * 15_922_808_912);
    assert.throws(() => visionTowerFlops(clip, new Array<number>(24).fill(577)), /runs 23 layers/);
    assert.throws(() => visionTowerFlops(clip, new Array<number>(23).fill(578)), /only 577/);
  });

  it('SigLIP embeds 27² patches per pass: no class token to leave out', () => {
    const siglip = ARCH_PRESETS['llava-onevision-qwen2-0.5b'].vision;
    const embed = 2 * 729 * 3 * 14 * 14 * 1152 + 8 * 729 * 1152;
    assert.equal(
      visionTowerFlops(siglip, new Array<number>(26).fill(729)) - 26 * visionLayerFlops(siglip, 729).total,
      embed,
    );
  });

  it('projector: 2N(Dv·Dt + Dt·Dt) + N·Dt (GELU)', () => {
    assert.equal(
      projectorFlops(ARCH_PRESETS['llava-1.5-7b'].projector, 576),
      2 * 576 * (1024 * 4096 + 4096 * 4096) + 576 * 4096,
    );
  });
});

describe('runs, presets and config.json', () => {
  const arch = archPreset('llava-1.5-7b');

  it(
    'unreducedShape: 577 tokens in 23 vision layers per image, 576 per image to the projector, visual + ' +
      'text in every decoder layer',
    () => {
      const shape = unreducedShape(arch, { images: 2, textTokens: 60 });
      assert.equal(shape.vision.length, 2);
      assert.deepEqual(shape.vision[0], new Array<number>(23).fill(577));
      assert.equal(shape.projector, 1152);
      assert.deepEqual(shape.llm, new Array<number>(32).fill(1212));
    },
  );

  it('runFlops splits vision / projector / LLM, and its llm part is the paper number', () => {
    const result = runFlops(arch, unreducedShape(arch, { images: 1, textTokens: 60 }));
    near(tflops(result.llm), 8.45, 0.01, 'llm');
    assert.equal(result.vision, visionTowerFlops(arch.vision, new Array<number>(23).fill(577)));
    assert.equal(result.projector, projectorFlops(arch.projector, 576));
    assert.equal(result.total, result.vision + result.projector + result.llm);
  });

  it('runFlops takes per-layer lists from a real run (FiCoCo-V-like vision schedule, in-layer LLM reduction)', () => {
    const vision = [...new Array<number>(12).fill(577), ...Array.from({ length: 11 }, (_, i) => 577 - 47 * i)];
    const visionMlp = [...new Array<number>(12).fill(577), ...Array.from({ length: 11 }, (_, i) => 577 - 47 * (i + 1))];
    const llm = [636, 636, 636, ...new Array<number>(29).fill(400)];
    const llmMlp = [636, 636, 400, ...new Array<number>(29).fill(400)];
    const result = runFlops(arch, { vision: [vision], visionMlp: [visionMlp], projector: 59, llm, llmMlp });
    assert.equal(result.llm, llmPrefillFlops(arch.llm, llm, llmMlp));
    assert.equal(result.vision, visionTowerFlops(arch.vision, vision, visionMlp));
    assert.ok(result.vision < runFlops(arch, unreducedShape(arch, { images: 1, textTokens: 60 })).vision);
  });

  it('a tiled architecture at a screenshot size: a tower pass per tile and the base image, the tokens of its grid', () => {
    const next = archForImage(archPreset('llava-next-mistral-7b'), { width: 1920, height: 1080 });
    assert.equal(next.visionPassesPerImage, 5);
    assert.equal(next.visualTokensPerImage, 1948);
    const shape = unreducedShape(next, { images: 1, textTokens: 60 });
    assert.equal(shape.vision.length, 5);
    assert.deepEqual(shape.vision[0], new Array<number>(23).fill(577));
    assert.deepEqual(shape.llm, new Array<number>(32).fill(2008));
    const onevision = archForImage(archPreset('llava-onevision-qwen2-0.5b'), { width: 1920, height: 1080 });
    assert.equal(onevision.visionPassesPerImage, 16);
    assert.equal(onevision.visualTokensPerImage, 7269);
    const siglip = unreducedShape(onevision, { images: 1, textTokens: 0 }).vision;
    assert.deepEqual(siglip[15], new Array<number>(26).fill(729), 'SigLIP has no class token: 27² per pass');
    // The projector runs on every pass's features, before unpadding, shrinking and row ends.
    assert.equal(shape.projector, 5 * 576);
    assert.equal(unreducedShape(onevision, { images: 2, textTokens: 0 }).projector, 2 * 16 * 729);
    assert.equal(unreducedShape(arch, { images: 1, textTokens: 60 }).projector, 576);
    const fixed = archPreset('llava-1.5-7b');
    assert.equal(archForImage(fixed, { width: 1920, height: 1080 }), fixed, 'LLaVA-1.5 sees every image at 336 px');
  });

  it('reducedBeforeLlmShape checks the budget against the images', () => {
    assert.deepEqual(
      reducedBeforeLlmShape(arch, { images: 1, textTokens: 60, visualTokens: 64 }).llm,
      new Array<number>(32).fill(124),
    );
    assert.throws(() => reducedBeforeLlmShape(arch, { images: 1, textTokens: 60, visualTokens: 577 }), /give only 576/);
  });

  it('presets: 13B is 28.59 TFLOPs with 512 text tokens; TinyLLaVA uses GQA', () => {
    const big = archPreset('llava-1.5-13b');
    near(tflops(runFlops(big, unreducedShape(big, { images: 1, textTokens: 512 })).llm), 28.59, 0.01, '13B');
    const tiny = archPreset('tinyllava-clip-tinyllama');
    assert.deepEqual(tiny.llm, {
      hiddenSize: 2048,
      intermediateSize: 5632,
      layers: 22,
      heads: 32,
      kvHeads: 4,
      headDim: 64,
    });
    assert.deepEqual(tiny.projector, { inputSize: 1024, hiddenSize: 2048, outputSize: 2048 });
    assert.equal(kvBytesPerToken(tiny.llm), 2 * 22 * 256 * 2);
  });

  it('an unknown preset lists the known ones; presets are copies', () => {
    assert.throws(
      () => archPreset('llava-9b'),
      /: Unknown architecture "llava-9b"; known: llava-1.5-7b, llava-1.5-13b, tinyllava-clip-tinyllama/,
    );
    const copy = archPreset('llava-1.5-7b');
    copy.llm.layers = 1;
    assert.equal(ARCH_PRESETS['llava-1.5-7b'].llm.layers, 32);
  });

  const LLAVA_15_7B_HF = {
    architectures: ['LlavaForConditionalGeneration'],
    ignore_index: -100,
    image_token_index: 32000,
    model_type: 'llava',
    pad_token_id: 32001,
    projector_hidden_act: 'gelu',
    text_config: {
      _name_or_path: 'lmsys/vicuna-7b-v1.5',
      architectures: ['LlamaForCausalLM'],
      max_position_embeddings: 4096,
      model_type: 'llama',
      rms_norm_eps: 1e-5,
      torch_dtype: 'float16',
      vocab_size: 32064,
    },
    tie_word_embeddings: false,
    torch_dtype: 'float16',
    transformers_version: '4.36.0.dev0',
    vision_config: {
      hidden_size: 1024,
      image_size: 336,
      intermediate_size: 4096,
      model_type: 'clip_vision_model',
      num_attention_heads: 16,
      num_hidden_layers: 24,
      patch_size: 14,
      projection_dim: 768,
      vocab_size: 32000,
    },
    vision_feature_layer: -2,
    vision_feature_select_strategy: 'default',
    vocab_size: 32064,
  };

  it("the engine's parsed llava-1.5-7b-hf config.json gives exactly the llava-1.5-7b preset", () => {
    assert.deepEqual(
      flopsArchOf(parseModelConfig(LLAVA_15_7B_HF, 'config.json').config, 'llava-1.5-7b'),
      ARCH_PRESETS['llava-1.5-7b'],
    );
  });

  it('a config without vision_config is CLIP-L/14-336; GQA and explicit head_dim are carried', () => {
    assert.deepEqual(
      flopsArchOf(parseModelConfig({ model_type: 'llava' }, 'c').config, 'llava-1.5-7b'),
      ARCH_PRESETS['llava-1.5-7b'],
    );
    const custom = flopsArchOf(
      parseModelConfig(
        {
          model_type: 'llava',
          vision_feature_layer: -1,
          vision_feature_select_strategy: 'full',
          vision_config: {
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            image_size: 48,
            patch_size: 8,
          },
          text_config: {
            model_type: 'llama',
            hidden_size: 48,
            intermediate_size: 96,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 12,
          },
        },
        'c',
      ).config,
      'x',
    );
    assert.equal(custom.vision.layersRun, 4);
    assert.equal(custom.visualTokensPerImage, 37);
    assert.deepEqual(custom.llm, {
      hiddenSize: 48,
      intermediateSize: 96,
      layers: 3,
      heads: 4,
      kvHeads: 2,
      headDim: 12,
    });
    assert.deepEqual(custom.projector, { inputSize: 32, hiddenSize: 48, outputSize: 48 });
  });
});

describe('flops table', () => {
  it('rows for the paper budgets: LLM TFLOPs, ratios and KV MB', () => {
    const arch = archPreset('llava-1.5-7b');
    const rows = flopsRows(arch, 60, [576, 192, 128, 64]);
    assert.deepEqual(
      rows.map((r) => r.llmTokens),
      [636, 252, 188, 124],
    );
    assert.deepEqual(
      rows.map((r) => (r.llm / 1e12).toFixed(2)),
      ['8.45', '3.30', '2.45', '1.61'],
    );
    assert.equal(rows[0].llmRatio, 1);
    assert.equal(rows[0].totalRatio, 1);
    assert.equal(rows[3].kvBytes, 524_288 * 124);
    const vision = runFlops(arch, unreducedShape(arch, { images: 1, textTokens: 60 })).vision;
    assert.ok(
      rows.every((r) => r.vision === vision && r.projector === rows[0].projector),
      'the tower and the projector run in full for a reduction before the LLM',
    );
    // A tiled image's projector maps every pass's features, however many reach the decoder.
    const tiled = archForImage(archPreset('llava-onevision-qwen2-0.5b'), { width: 1920, height: 1080 });
    const [all, eleven] = flopsRows(tiled, 60, [7269, 800]);
    assert.equal(all.totalRatio, 1);
    assert.equal(eleven.projector, all.projector);
    const table = flopsTable(arch, 60, [576, 64]);
    assert.match(table, /^\| visual tokens kept \|/);
    assert.match(table, /\| 64\/576 \| 124 \| 1\.61 \|/);
    assert.equal(table.split('\n').length, 4);
  });
});
