import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import type { LlavaConfig } from '../../src/engine/models/llava';
import { parseModelConfig } from '../../src/engine/models/registry';

type Json = Record<string, unknown>;

/** config.json through the model registry, as the engine reads it. */
const parseLlavaConfig = (json: unknown, source: string) => parseModelConfig(json, source).config as LlavaConfig;

/** llava-hf/llava-1.5-7b-hf config.json, verbatim. */
const LLAVA_15_7B = `{"architectures":["LlavaForConditionalGeneration"],"ignore_index":-100,"image_token_index":32000,"model_type":"llava","pad_token_id":32001,"projector_hidden_act":"gelu","text_config":{"_name_or_path":"lmsys/vicuna-7b-v1.5","architectures":["LlamaForCausalLM"],"max_position_embeddings":4096,"model_type":"llama","rms_norm_eps":1e-05,"torch_dtype":"float16","vocab_size":32064},"tie_word_embeddings":false,"torch_dtype":"float16","transformers_version":"4.36.0.dev0","vision_config":{"hidden_size":1024,"image_size":336,"intermediate_size":4096,"model_type":"clip_vision_model","num_attention_heads":16,"num_hidden_layers":24,"patch_size":14,"projection_dim":768,"vocab_size":32000},"vision_feature_layer":-2,"vision_feature_select_strategy":"default","vocab_size":32064}`;

const SOURCE = 'models/x/config.json';

function base(): Json {
  return JSON.parse(LLAVA_15_7B) as Json;
}

/** The 7B config with `text` merged into text_config (and `top` into the top level). */
function withText(text: Json, top: Json = {}): Json {
  const json = base();
  return { ...json, ...top, text_config: { ...(json.text_config as Json), ...text } };
}

function withVision(vision: Json): Json {
  const json = base();
  return { ...json, vision_config: { ...(json.vision_config as Json), ...vision } };
}

/** Asserts a FicocoError of kind 'config' whose message names the config file and `field`. */
function rejects(json: unknown, field: string): void {
  assert.throws(
    () => parseLlavaConfig(json, SOURCE),
    (error: unknown) => {
      assert.ok(error instanceof FicocoError, `expected FicocoError, got ${String(error)}`);
      assert.equal(error.kind, 'config');
      assert.ok(error.message.startsWith(`${SOURCE}: `), `message should name the file: ${error.message}`);
      assert.ok(error.message.includes(field), `message should name ${field}: ${error.message}`);
      return true;
    },
  );
}

describe('parseLlavaConfig: real and realistic configs', () => {
  test('llava-1.5-7b-hf parses to the values transformers instantiates', () => {
    const config = parseLlavaConfig(JSON.parse(LLAVA_15_7B), SOURCE);
    assert.deepEqual(config, {
      modelType: 'llava',
      imageTokenId: 32000,
      projector: { activation: 'gelu', bias: true },
      visionLayers: 23,
      visionFeatureSelect: 'default',
      classTokenInFeatures: false,
      vision: {
        modelType: 'clip_vision_model',
        hiddenSize: 1024,
        intermediateSize: 4096,
        layers: 24,
        heads: 16,
        imageSize: 336,
        patchSize: 14,
        patchesPerSide: 24,
        layerNormEps: 1e-5,
        activation: 'quick_gelu',
        classToken: true,
      },
      text: {
        modelType: 'llama',
        hiddenSize: 4096,
        intermediateSize: 11008,
        layers: 32,
        heads: 32,
        kvHeads: 32,
        headDim: 128,
        rmsNormEps: 1e-5,
        ropeTheta: 10000,
        vocabSize: 32064,
        maxPositions: 4096,
        tieWordEmbeddings: false,
        qkvBias: false,
        outputBias: false,
        mlpBias: false,
        activation: 'silu',
      },
    });
  });

  test('llava-1.5-13b-style text config: 5120 wide, 40 layers and heads, head_dim 128', () => {
    const { text } = parseLlavaConfig(
      withText({ hidden_size: 5120, intermediate_size: 13824, num_attention_heads: 40, num_hidden_layers: 40 }),
      SOURCE,
    );
    assert.equal(text.hiddenSize, 5120);
    assert.equal(text.intermediateSize, 13824);
    assert.equal(text.layers, 40);
    assert.equal(text.heads, 40);
    assert.equal(text.kvHeads, 40, 'llama: kv heads default to the attention heads');
    assert.equal(text.headDim, 128);
  });

  test('Mistral text config uses Mistral defaults: 8 kv heads, intermediate 14336, rms eps 1e-6', () => {
    const { text } = parseLlavaConfig({ ...base(), text_config: { model_type: 'mistral' } }, SOURCE);
    assert.equal(text.modelType, 'mistral');
    assert.equal(text.kvHeads, 8);
    assert.equal(text.heads, 32);
    assert.equal(text.intermediateSize, 14336);
    assert.equal(text.hiddenSize, 4096);
    assert.equal(text.headDim, 128);
    assert.equal(text.rmsNormEps, 1e-6);
    assert.equal(text.vocabSize, 32000);
    assert.equal(text.qkvBias, false);
    assert.equal(text.outputBias, false);
  });

  test('a sliding attention window caps the context: Mistral by default (4096), Qwen2 where a layer slides', () => {
    const context = (text_config: Record<string, unknown>) =>
      parseLlavaConfig({ ...base(), text_config }, SOURCE).text.maxPositions;
    assert.equal(context({ model_type: 'mistral', max_position_embeddings: 32768 }), 4096, "MistralConfig's default");
    assert.equal(context({ model_type: 'mistral', max_position_embeddings: 32768, sliding_window: null }), 32768);
    assert.equal(context({ model_type: 'mistral', max_position_embeddings: 32768, sliding_window: 64 }), 64);
    assert.equal(context({ model_type: 'qwen2', sliding_window: 1000 }), 32768, 'Qwen2 without use_sliding_window');
    assert.equal(
      context({ model_type: 'qwen2', use_sliding_window: true, sliding_window: 1000 }),
      1000,
      'Qwen2 slides its layers from 28 on (of 32 by default)',
    );
    assert.equal(
      context({ model_type: 'qwen2', num_hidden_layers: 24, use_sliding_window: true, sliding_window: 1000 }),
      32768,
      'from layer 28 on, of 24: none slides',
    );
    assert.equal(context({ model_type: 'llama', max_position_embeddings: 4096, sliding_window: 64 }), 4096);
    assert.throws(
      () => context({ model_type: 'mistral', sliding_window: 0 }),
      /text_config\.sliding_window/,
      'a window of no positions is refused, naming the field',
    );
  });

  test('Mistral with explicit num_key_value_heads keeps the given value', () => {
    const { text } = parseLlavaConfig(
      { ...base(), text_config: { model_type: 'mistral', num_key_value_heads: 4 } },
      SOURCE,
    );
    assert.equal(text.kvHeads, 4);
  });

  test('Qwen2 text config: q/k/v biases on, o_proj bias off, Qwen2 defaults', () => {
    const { text } = parseLlavaConfig(
      {
        ...base(),
        text_config: {
          model_type: 'qwen2',
          hidden_size: 896,
          num_attention_heads: 14,
          num_key_value_heads: 2,
          intermediate_size: 4864,
          num_hidden_layers: 24,
        },
      },
      SOURCE,
    );
    assert.equal(text.modelType, 'qwen2');
    assert.equal(text.qkvBias, true);
    assert.equal(text.outputBias, false);
    assert.equal(text.mlpBias, false);
    assert.equal(text.headDim, 64);
    assert.equal(text.kvHeads, 2);
    assert.equal(text.vocabSize, 151936, 'Qwen2 default vocabulary');
    assert.equal(text.rmsNormEps, 1e-6);
  });

  test('Qwen2 ignores attention_bias: false (its q/k/v always carry biases)', () => {
    const { text } = parseLlavaConfig(
      { ...base(), text_config: { model_type: 'qwen2', attention_bias: false } },
      SOURCE,
    );
    assert.equal(text.qkvBias, true);
    assert.equal(text.outputBias, false);
  });

  test('Llama attention_bias: true puts biases on q, k, v and o', () => {
    const { text } = parseLlavaConfig(withText({ attention_bias: true, mlp_bias: true }), SOURCE);
    assert.equal(text.qkvBias, true);
    assert.equal(text.outputBias, true);
    assert.equal(text.mlpBias, true);
  });

  test('tie_word_embeddings: the top level applies when text_config is silent', () => {
    const json = { ...base(), tie_word_embeddings: true, text_config: { model_type: 'qwen2' } };
    assert.equal(parseLlavaConfig(json, SOURCE).text.tieWordEmbeddings, true);
  });

  test('tie_word_embeddings: text_config wins over the top level', () => {
    assert.equal(
      parseLlavaConfig(
        { ...base(), tie_word_embeddings: false, text_config: { model_type: 'qwen2', tie_word_embeddings: true } },
        SOURCE,
      ).text.tieWordEmbeddings,
      true,
    );
    assert.equal(
      parseLlavaConfig(
        { ...base(), tie_word_embeddings: true, text_config: { model_type: 'qwen2', tie_word_embeddings: false } },
        SOURCE,
      ).text.tieWordEmbeddings,
      false,
    );
  });

  test('tie_word_embeddings: absent everywhere → the text model default (false)', () => {
    const json = base();
    delete json.tie_word_embeddings;
    assert.equal(parseLlavaConfig(json, SOURCE).text.tieWordEmbeddings, false);
  });

  test('an explicit head_dim overrides hidden_size / heads', () => {
    const { text } = parseLlavaConfig(withText({ hidden_size: 2048, num_attention_heads: 8, head_dim: 128 }), SOURCE);
    assert.equal(text.headDim, 128);
    assert.equal(text.heads, 8);
  });

  test('image_token_id (newer key) is preferred over image_token_index', () => {
    assert.equal(parseLlavaConfig({ ...base(), image_token_id: 151646 }, SOURCE).imageTokenId, 151646);
    const json = base();
    delete json.image_token_index;
    assert.equal(parseLlavaConfig({ ...json, image_token_id: 7 }, SOURCE).imageTokenId, 7);
  });

  test('image_token_index is read when image_token_id is absent, and defaults to 32000', () => {
    assert.equal(parseLlavaConfig({ ...base(), image_token_index: 12345 }, SOURCE).imageTokenId, 12345);
    const json = base();
    delete json.image_token_index;
    assert.equal(parseLlavaConfig(json, SOURCE).imageTokenId, 32000);
  });

  test('vision_feature_select_strategy "full" keeps the [CLS] token', () => {
    const config = parseLlavaConfig({ ...base(), vision_feature_select_strategy: 'full' }, SOURCE);
    assert.equal(config.visionFeatureSelect, 'full');
    assert.equal(config.classTokenInFeatures, true);
  });

  test('vision_feature_layer: positive values are hidden-state indices as given, negatives count from the end', () => {
    assert.equal(parseLlavaConfig({ ...base(), vision_feature_layer: 5 }, SOURCE).visionLayers, 5);
    assert.equal(parseLlavaConfig({ ...base(), vision_feature_layer: 24 }, SOURCE).visionLayers, 24);
    assert.equal(parseLlavaConfig({ ...base(), vision_feature_layer: -1 }, SOURCE).visionLayers, 24);
    // 0 and −25 are the patch embeddings: a tower of no layers, where no reduction could run.
    for (const layer of [0, -25])
      assert.throws(
        () => parseLlavaConfig({ ...base(), vision_feature_layer: layer }, SOURCE),
        /vision_feature_layer is -?\d+; expected a layer of the 24-layer tower: 1 to 24, or −24 to −1/,
      );
  });

  test('activation aliases map to graph activations', () => {
    assert.equal(
      parseLlavaConfig({ ...base(), projector_hidden_act: 'gelu_pytorch_tanh' }, SOURCE).projector.activation,
      'gelu_tanh',
    );
    assert.equal(parseLlavaConfig(withVision({ hidden_act: 'gelu' }), SOURCE).vision.activation, 'gelu');
    assert.equal(parseLlavaConfig(withText({ hidden_act: 'swish' }), SOURCE).text.activation, 'silu');
  });

  test('multimodal_projector_bias: false turns the projector bias off', () => {
    assert.equal(parseLlavaConfig({ ...base(), multimodal_projector_bias: false }, SOURCE).projector.bias, false);
  });

  test('missing vision_config gives the CLIP ViT-L/14-336 tower transformers builds for llava', () => {
    const json = base();
    delete json.vision_config;
    const { vision, visionLayers } = parseLlavaConfig(json, SOURCE);
    assert.deepEqual(
      {
        hidden: vision.hiddenSize,
        intermediate: vision.intermediateSize,
        layers: vision.layers,
        heads: vision.heads,
        image: vision.imageSize,
        patch: vision.patchSize,
      },
      { hidden: 1024, intermediate: 4096, layers: 24, heads: 16, image: 336, patch: 14 },
    );
    assert.equal(visionLayers, 23);
  });

  test('vision_config without the llava overrides falls back to CLIPVisionConfig defaults (ViT-B/32)', () => {
    const { vision } = parseLlavaConfig({ ...base(), vision_config: {}, vision_feature_layer: -2 }, SOURCE);
    assert.equal(vision.hiddenSize, 768);
    assert.equal(vision.layers, 12);
    assert.equal(vision.imageSize, 224);
    assert.equal(vision.patchSize, 32);
  });

  test('missing text_config gives LlamaConfig defaults (vocab 32000, eps 1e-6)', () => {
    const json = base();
    delete json.text_config;
    const { text } = parseLlavaConfig(json, SOURCE);
    assert.equal(text.modelType, 'llama');
    assert.equal(text.vocabSize, 32000);
    assert.equal(text.rmsNormEps, 1e-6);
    assert.equal(text.hiddenSize, 4096);
  });
});

describe('parseLlavaConfig: errors name the field', () => {
  test('not an object', () => {
    rejects(null, 'top level');
    rejects([1, 2], 'top level');
    rejects('llava', 'top level');
  });

  test('text_config / vision_config that are not objects', () => {
    rejects({ ...base(), text_config: 3 }, 'text_config');
    rejects({ ...base(), vision_config: [] }, 'vision_config');
  });

  test('wrong model_type', () => {
    rejects({ ...base(), model_type: 'qwen2_vl' }, 'model_type');
    const json = base();
    delete json.model_type;
    rejects(json, 'model_type');
  });

  test('unsupported vision model_type', () => {
    rejects(withVision({ model_type: 'dinov2' }), 'vision_config.model_type');
  });

  test('a SigLIP tower: no class token, so only the "full" feature strategy', () => {
    const siglip = { ...withVision({ model_type: 'siglip_vision_model' }), vision_feature_select_strategy: 'full' };
    const config = parseLlavaConfig(siglip, SOURCE);
    assert.equal(config.vision.classToken, false);
    assert.equal(config.vision.activation, 'gelu_tanh', "SigLIP's default hidden_act is gelu_pytorch_tanh");
    assert.equal(config.classTokenInFeatures, false);
    rejects(
      { ...withVision({ model_type: 'siglip_vision_model' }), vision_feature_select_strategy: 'default' },
      'vision_feature_select_strategy',
    );
  });

  test('unsupported text model_type', () => {
    rejects(withText({ model_type: 'gemma' }), 'text_config.model_type');
  });

  test('non-integer and negative sizes', () => {
    rejects(withText({ hidden_size: 4096.5 }), 'text_config.hidden_size');
    rejects(withText({ num_hidden_layers: -1 }), 'text_config.num_hidden_layers');
    rejects(withText({ num_hidden_layers: 0 }), 'text_config.num_hidden_layers');
    rejects(withText({ intermediate_size: '11008' }), 'text_config.intermediate_size');
    rejects(withText({ vocab_size: 0 }), 'text_config.vocab_size');
    rejects(withText({ num_attention_heads: -32 }), 'text_config.num_attention_heads');
    rejects(withText({ num_key_value_heads: 0 }), 'text_config.num_key_value_heads');
    rejects(withVision({ hidden_size: -1024 }), 'vision_config.hidden_size');
    rejects(withVision({ num_hidden_layers: 1.5 }), 'vision_config.num_hidden_layers');
    rejects(withVision({ patch_size: 0 }), 'vision_config.patch_size');
    rejects({ ...base(), image_token_index: -1 }, 'image_token_index');
    rejects({ ...base(), image_token_id: 1.5 }, 'image_token_id');
  });

  test('non-numeric eps / theta', () => {
    rejects(withText({ rms_norm_eps: '1e-5' }), 'text_config.rms_norm_eps');
    rejects(withText({ rope_theta: null }), 'text_config.rope_theta');
    rejects(withVision({ layer_norm_eps: 'tiny' }), 'vision_config.layer_norm_eps');
  });

  test('eps and theta of zero or less, which make every answer NaN', () => {
    rejects(withText({ rms_norm_eps: 0 }), 'text_config.rms_norm_eps');
    rejects(withText({ rope_theta: -10000 }), 'text_config.rope_theta');
    rejects(withVision({ layer_norm_eps: -1e-5 }), 'vision_config.layer_norm_eps');
  });

  test('non-boolean flags', () => {
    rejects(withText({ attention_bias: 'yes' }), 'text_config.attention_bias');
    rejects({ ...base(), multimodal_projector_bias: 1 }, 'multimodal_projector_bias');
    rejects({ ...base(), tie_word_embeddings: 'no' }, 'text_config.tie_word_embeddings');
  });

  test('vision hidden_size not divisible by heads', () => {
    rejects(withVision({ hidden_size: 1000, num_attention_heads: 16 }), 'vision_config.hidden_size');
  });

  test('vision image_size not a multiple of patch_size: whole patches only, as the unpadded convolution sees', () => {
    // SigLIP-so400m/384: 384 px in 14-px patches is 27 of them; the last 6 px are never seen.
    const siglip = parseLlavaConfig(
      {
        ...withVision({ model_type: 'siglip_vision_model', image_size: 384, patch_size: 14 }),
        vision_feature_select_strategy: 'full',
      },
      SOURCE,
    );
    assert.equal(siglip.vision.patchesPerSide, 27);
    rejects(withVision({ image_size: 10, patch_size: 14 }), 'vision_config.patch_size');
  });

  test('text hidden_size not divisible by heads (no head_dim given)', () => {
    rejects(withText({ hidden_size: 4100, num_attention_heads: 32 }), 'text_config.hidden_size');
  });

  test('kv heads not dividing heads', () => {
    rejects(withText({ num_key_value_heads: 5 }), 'text_config.num_key_value_heads');
  });

  test('odd head_dim, given or implied', () => {
    rejects(withText({ head_dim: 3 }), 'text_config.head_dim');
    rejects(withText({ head_dim: 0 }), 'text_config.head_dim');
    rejects(withText({ hidden_size: 96, num_attention_heads: 32, num_key_value_heads: 32 }), 'text_config.head_dim');
  });

  test('rope_scaling set', () => {
    rejects(withText({ rope_scaling: { type: 'linear', factor: 2 } }), 'text_config.rope_scaling');
  });

  test('rope_scaling: null is accepted', () => {
    assert.equal(parseLlavaConfig(withText({ rope_scaling: null }), SOURCE).text.ropeTheta, 10000);
  });

  test("transformers 5's rope_parameters: its base is read; scaling, or a non-object, is refused", () => {
    const theta = (rope: unknown) => parseLlavaConfig(withText({ rope_parameters: rope }), SOURCE).text.ropeTheta;
    assert.equal(theta({ rope_type: 'default', rope_theta: 1_000_000 }), 1_000_000);
    assert.equal(theta({ rope_theta: 500_000 }), 500_000);
    assert.equal(theta(null), 10000);
    rejects(withText({ rope_parameters: { rope_type: 'yarn', factor: 4, rope_theta: 1e6 } }), 'rope_type');
    rejects(withText({ rope_parameters: 'default' }), 'text_config.rope_parameters');
    rejects(withText({ rope_parameters: { rope_theta: -1 } }), 'text_config.rope_theta');
  });

  test('unknown activation', () => {
    rejects({ ...base(), projector_hidden_act: 'relu' }, 'projector_hidden_act');
    rejects(withText({ hidden_act: 'relu2' }), 'text_config.hidden_act');
    rejects(withVision({ hidden_act: 42 }), 'vision_config.hidden_act');
  });

  test('bad select strategy', () => {
    rejects({ ...base(), vision_feature_select_strategy: 'cls' }, 'vision_feature_select_strategy');
  });

  test('feature layer out of range or not an integer', () => {
    rejects({ ...base(), vision_feature_layer: 25 }, 'vision_feature_layer');
    rejects({ ...base(), vision_feature_layer: -26 }, 'vision_feature_layer');
    rejects({ ...base(), vision_feature_layer: [-2, -5] }, 'vision_feature_layer');
    rejects({ ...base(), vision_feature_layer: -2.5 }, 'vision_feature_layer');
  });
});
