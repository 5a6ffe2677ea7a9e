/**
 * Full-size LLaVA architectures with random weights, written as Hugging Face folders the engine loads,
 * for benchmarks, where the shapes are what costs. The tokenizer and chat template are the small test
 * fixture's (its ids stay below every vocabulary size here).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { float32ToFloat16 } from '../src/engine/weights/dtype';
import { safetensorsPrefix } from '../src/engine/weights/safetensorsWriter';

export interface RandomArchitecture {
  name: string;
  label: string;
  /** CLIP ([CLS], pre-LayerNorm, feature layer −2, 'default') or SigLIP (neither, last layer, 'full') */
  tower?: 'clip' | 'siglip';
  /** Llama (no biases) or Qwen2 (q/k/v biases) */
  decoder?: 'llama' | 'qwen2';
  /** a tiling family, with its default pinpoints (and anyres_max_9 for OneVision) and a learned image_newline */
  family?: 'llava_next' | 'llava_onevision';
  vision: { hidden: number; intermediate: number; layers: number; heads: number; imageSize: number; patch: number };
  text: { hidden: number; intermediate: number; layers: number; heads: number; kvHeads: number; vocab: number };
}

/** CLIP ViT-L/14-336 + TinyLlama-1.1B (TinyLLaVA's shapes): 576 visual tokens. */
export const TINYLLAVA: RandomArchitecture = {
  name: 'tinyllava-clip-tinyllama',
  label: 'CLIP-L/336 + TinyLlama-1.1B',
  vision: { hidden: 1024, intermediate: 4096, layers: 24, heads: 16, imageSize: 336, patch: 14 },
  text: { hidden: 2048, intermediate: 5632, layers: 22, heads: 32, kvHeads: 4, vocab: 32000 },
};

/** CLIP ViT-L/14-336 + Vicuna-7B (LLaVA-1.5-7B's shapes) with the decoder cut to `layers` of its 32, to fit memory. */
export function llava7b(layers: number): RandomArchitecture {
  return {
    name: `llava-1.5-7b-${layers}of32`,
    label: `CLIP-L/336 + Vicuna-7B shapes, decoder cut to ${layers} of 32 layers`,
    vision: TINYLLAVA.vision,
    text: { hidden: 4096, intermediate: 11008, layers, heads: 32, kvHeads: 32, vocab: 32000 },
  };
}

/**
 * SigLIP-so400m/384 (cut to 26 layers) + Qwen2-0.5B, LLaVA-OneVision-0.5B's shapes for one 384-px tile:
 * 729 visual tokens, no class token.
 */
export const ONEVISION_TILE: RandomArchitecture = {
  name: 'siglip-so400m-qwen2-0.5b',
  label: 'SigLIP-so400m/384 + Qwen2-0.5B (one LLaVA-OneVision tile)',
  tower: 'siglip',
  decoder: 'qwen2',
  vision: { hidden: 1152, intermediate: 4304, layers: 26, heads: 16, imageSize: 384, patch: 14 },
  text: { hidden: 896, intermediate: 4864, layers: 24, heads: 14, kvHeads: 2, vocab: 151936 },
};

/** LLaVA-OneVision-0.5B's shapes, tiled: SigLIP-so400m/384 + Qwen2-0.5B, 36 pinpoints, anyres_max_9. */
export const ONEVISION_05B: RandomArchitecture = {
  ...ONEVISION_TILE,
  name: 'llava-onevision-0.5b',
  label: 'LLaVA-OneVision-0.5B shapes (SigLIP-so400m/384 + Qwen2-0.5B, anyres_max_9)',
  family: 'llava_onevision',
};

/**
 * The built-in model's widths (tiny-llava-screens, about 2 M parameters) tiled as LLaVA-OneVision: 168-px tiles of
 * 144 tokens, anyres_max_9. What a built-in model that reads screenshots at their resolution would cost.
 */
export const BUILTIN_ANYRES: RandomArchitecture = {
  name: 'builtin-widths-onevision',
  label: "the built-in model's widths (about 2 M parameters) tiled as LLaVA-OneVision (168-px tiles, anyres_max_9)",
  tower: 'siglip',
  decoder: 'qwen2',
  family: 'llava_onevision',
  vision: { hidden: 128, intermediate: 512, layers: 6, heads: 4, imageSize: 168, patch: 14 },
  text: { hidden: 128, intermediate: 384, layers: 4, heads: 4, kvHeads: 4, vocab: 128 },
};

/** LLaVA-NeXT-7B's shapes (CLIP-L/336 + Mistral-7B, five pinpoints) with the decoder cut to `layers` of its 32. */
export function llavaNext7b(layers: number): RandomArchitecture {
  return {
    name: `llava-next-mistral-7b-${layers}of32`,
    label: `LLaVA-NeXT-Mistral-7B shapes (CLIP-L/336 + Mistral-7B), decoder cut to ${layers} of 32 layers`,
    family: 'llava_next',
    vision: TINYLLAVA.vision,
    text: { hidden: 4096, intermediate: 14336, layers, heads: 32, kvHeads: 8, vocab: 32064 },
  };
}

/** The same model with another vision input size: (imageSize / patch)² visual tokens. */
export function withImageSize(arch: RandomArchitecture, imageSize: number): RandomArchitecture {
  const tokens = Math.floor(imageSize / arch.vision.patch) ** 2;
  return {
    ...arch,
    name: `${arch.name}-${imageSize}px`,
    label: `${arch.label}, ${imageSize} px input (${tokens} visual tokens)`,
    vision: { ...arch.vision, imageSize },
  };
}

/** The architectures benchmarks name with --arch; LLaVA-1.5-7B's and LLaVA-NeXT-7B's decoders cut to `layers`. */
const ARCHITECTURES: Record<string, (layers: number) => RandomArchitecture> = {
  tinyllava: () => TINYLLAVA,
  'onevision-tile': () => ONEVISION_TILE,
  'llava-7b': llava7b,
  'onevision-0.5b': () => ONEVISION_05B,
  'llava-next-7b': llavaNext7b,
  'builtin-anyres': () => BUILTIN_ANYRES,
};

/** The architecture an --arch names; an Error listing them for another name. */
export function randomArchitecture(name: string, layers: number): RandomArchitecture {
  if (!Object.hasOwn(ARCHITECTURES, name))
    throw new Error(`--arch ${name}: one of ${Object.keys(ARCHITECTURES).join(', ')}`);
  return ARCHITECTURES[name](layers);
}

/** Where the benchmarks keep `arch`'s random model: $TMPDIR/ficoco-bench/<name>-f32 (or -f16). */
export function randomModelDir(arch: RandomArchitecture, dtype: 'F32' | 'F16' = 'F32'): string {
  return path.join(os.tmpdir(), 'ficoco-bench', `${arch.name}-${dtype.toLowerCase()}`);
}

const FIXTURE = path.join(__dirname, '..', 'test', 'fixtures', 'tiny-llava-llama');

/** Writes `arch` with F32 or F16 random weights into `dir` (kept when already complete); returns dir. */
export function writeRandomModel(arch: RandomArchitecture, dir: string, dtype: 'F32' | 'F16' = 'F32'): string {
  const weightsFile = path.join(dir, 'model.safetensors');
  if (fs.existsSync(weightsFile)) return dir;
  fs.mkdirSync(dir, { recursive: true });
  for (const file of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'])
    fs.copyFileSync(path.join(FIXTURE, file), path.join(dir, file));
  const preprocessor = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'preprocessor_config.json'), 'utf8'));
  fs.writeFileSync(
    path.join(dir, 'preprocessor_config.json'),
    JSON.stringify(
      {
        ...preprocessor,
        ...(arch.family === 'llava_next' ? { image_processor_type: 'LlavaNextImageProcessor' } : {}),
        ...(arch.family === 'llava_onevision' ? { image_processor_type: 'LlavaOnevisionImageProcessor' } : {}),
        size: { shortest_edge: arch.vision.imageSize },
        crop_size: { height: arch.vision.imageSize, width: arch.vision.imageSize },
      },
      null,
      2,
    ),
  );
  const fixtureConfig = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'config.json'), 'utf8'));
  const { vision: v, text: t } = arch;
  const siglip = arch.tower === 'siglip';
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify(
      {
        ...fixtureConfig,
        torch_dtype: dtype === 'F32' ? 'float32' : 'float16',
        ...(arch.family ? { model_type: arch.family } : {}),
        ...(siglip ? { vision_feature_layer: -1, vision_feature_select_strategy: 'full' } : {}),
        // OneVision's default grid of 1–6 tiles a side, in this tower's tile size.
        ...(arch.family === 'llava_onevision' ? { image_grid_pinpoints: tileGrid(6, v.imageSize) } : {}),
        vision_config: {
          ...fixtureConfig.vision_config,
          ...(siglip
            ? { model_type: 'siglip_vision_model', hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6 }
            : {}),
          hidden_size: v.hidden,
          intermediate_size: v.intermediate,
          num_hidden_layers: v.layers,
          num_attention_heads: v.heads,
          image_size: v.imageSize,
          patch_size: v.patch,
          projection_dim: 768,
        },
        text_config: {
          ...fixtureConfig.text_config,
          ...(arch.decoder === 'qwen2' ? { model_type: 'qwen2' } : {}),
          hidden_size: t.hidden,
          intermediate_size: t.intermediate,
          num_hidden_layers: t.layers,
          num_attention_heads: t.heads,
          num_key_value_heads: t.kvHeads,
          head_dim: t.hidden / t.heads,
          vocab_size: t.vocab,
          // A tiled 1920 × 1080 screenshot is 7,269 tokens on OneVision.
          max_position_embeddings: arch.family ? 32768 : 4096,
        },
      },
      null,
      2,
    ),
  );

  const tensors = shapesOf(arch);
  const bytesPer = dtype === 'F32' ? 4 : 2;
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, shape] of tensors) {
    const bytes = shape.reduce((a, b) => a * b, 1) * bytesPer;
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const partial = `${weightsFile}.partial`;
  const fd = fs.openSync(partial, 'w');
  try {
    fs.writeSync(fd, safetensorsPrefix(header));
    let seed = 12345;
    for (const [name, shape] of tensors) {
      const count = shape.reduce((a, b) => a * b, 1);
      const isNorm = /norm|layernorm/.test(name) && shape.length === 1;
      // Normal-ish values of scale 0.02 (1 for norm weights) keep activations finite through 24 layers.
      const scale = isNorm ? 0 : 0.02 * Math.sqrt(3);
      for (let start = 0; start < count; start += 1 << 22) {
        const length = Math.min(1 << 22, count - start);
        const values = new Float32Array(length);
        for (let i = 0; i < length; i++) {
          seed = (seed ^ (seed << 13)) >>> 0;
          seed = (seed ^ (seed >>> 17)) >>> 0;
          seed = (seed ^ (seed << 5)) >>> 0;
          values[i] = isNorm && name.endsWith('.weight') ? 1 : (seed / 2 ** 31 - 1) * scale;
        }
        fs.writeSync(
          fd,
          dtype === 'F32' ? new Uint8Array(values.buffer) : new Uint8Array(float32ToFloat16(values).buffer),
        );
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(partial, weightsFile);
  return dir;
}

/** [height, width] of every grid of 1 to `sides` tiles a side. */
function tileGrid(sides: number, tile: number): number[][] {
  const counts = Array.from({ length: sides }, (_, i) => i + 1);
  return counts.flatMap((rows) => counts.map((cols) => [rows * tile, cols * tile]));
}

/** The bytes of `arch`'s weights in `dtype`. */
export function weightBytes(arch: RandomArchitecture, dtype: 'F32' | 'F16'): number {
  const elements = shapesOf(arch).reduce((sum, [, shape]) => sum + shape.reduce((a, b) => a * b, 1), 0);
  return elements * (dtype === 'F32' ? 4 : 2);
}

/** Tensor names and shapes in llava-hf's (pre-4.52) naming. */
function shapesOf(arch: RandomArchitecture): [string, number[]][] {
  const { vision: v, text: t } = arch;
  const tensors: [string, number[]][] = [];
  const vt = 'vision_tower.vision_model.';
  const clip = arch.tower !== 'siglip';
  const patches = Math.floor(v.imageSize / v.patch) ** 2;
  // CLIP: a class embedding and pre_layrnorm; SigLIP: a bias on the patch convolution instead.
  if (clip) tensors.push([`${vt}embeddings.class_embedding`, [v.hidden]]);
  tensors.push([`${vt}embeddings.patch_embedding.weight`, [v.hidden, 3, v.patch, v.patch]]);
  if (!clip) tensors.push([`${vt}embeddings.patch_embedding.bias`, [v.hidden]]);
  tensors.push([`${vt}embeddings.position_embedding.weight`, [patches + (clip ? 1 : 0), v.hidden]]);
  if (clip) tensors.push([`${vt}pre_layrnorm.weight`, [v.hidden]], [`${vt}pre_layrnorm.bias`, [v.hidden]]);
  for (let l = 0; l < v.layers; l++) {
    const p = `${vt}encoder.layers.${l}.`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj'])
      tensors.push([`${p}self_attn.${proj}.weight`, [v.hidden, v.hidden]], [`${p}self_attn.${proj}.bias`, [v.hidden]]);
    for (const norm of ['layer_norm1', 'layer_norm2'])
      tensors.push([`${p}${norm}.weight`, [v.hidden]], [`${p}${norm}.bias`, [v.hidden]]);
    tensors.push(
      [`${p}mlp.fc1.weight`, [v.intermediate, v.hidden]],
      [`${p}mlp.fc1.bias`, [v.intermediate]],
      [`${p}mlp.fc2.weight`, [v.hidden, v.intermediate]],
      [`${p}mlp.fc2.bias`, [v.hidden]],
    );
  }
  tensors.push([`${vt}post_layernorm.weight`, [v.hidden]], [`${vt}post_layernorm.bias`, [v.hidden]]);
  tensors.push(
    ['multi_modal_projector.linear_1.weight', [t.hidden, v.hidden]],
    ['multi_modal_projector.linear_1.bias', [t.hidden]],
    ['multi_modal_projector.linear_2.weight', [t.hidden, t.hidden]],
    ['multi_modal_projector.linear_2.bias', [t.hidden]],
  );
  const lm = 'language_model.model.';
  const headDim = t.hidden / t.heads;
  tensors.push([`${lm}embed_tokens.weight`, [t.vocab, t.hidden]]);
  for (let l = 0; l < t.layers; l++) {
    const p = `${lm}layers.${l}.`;
    tensors.push(
      [`${p}self_attn.q_proj.weight`, [t.hidden, t.hidden]],
      [`${p}self_attn.k_proj.weight`, [t.kvHeads * headDim, t.hidden]],
      [`${p}self_attn.v_proj.weight`, [t.kvHeads * headDim, t.hidden]],
      [`${p}self_attn.o_proj.weight`, [t.hidden, t.hidden]],
    );
    if (arch.decoder === 'qwen2')
      tensors.push(
        [`${p}self_attn.q_proj.bias`, [t.hidden]],
        [`${p}self_attn.k_proj.bias`, [t.kvHeads * headDim]],
        [`${p}self_attn.v_proj.bias`, [t.kvHeads * headDim]],
      );
    tensors.push(
      [`${p}mlp.gate_proj.weight`, [t.intermediate, t.hidden]],
      [`${p}mlp.up_proj.weight`, [t.intermediate, t.hidden]],
      [`${p}mlp.down_proj.weight`, [t.hidden, t.intermediate]],
    );
    tensors.push([`${p}input_layernorm.weight`, [t.hidden]], [`${p}post_attention_layernorm.weight`, [t.hidden]]);
  }
  tensors.push([`${lm}norm.weight`, [t.hidden]], ['language_model.lm_head.weight', [t.vocab, t.hidden]]);
  if (arch.family) tensors.push(['image_newline', [t.hidden]]);
  return tensors;
}

// node --import tsx bench/randomModel.ts DIR [F32|F16]: the TinyLLaVA-shaped model, for the other benchmarks.
if (require.main === module) {
  const [dir, dtype = 'F32'] = process.argv.slice(2);
  if (!dir || (dtype !== 'F32' && dtype !== 'F16'))
    throw new Error('usage: node --import tsx bench/randomModel.ts DIR [F32|F16]');
  process.stdout.write(`${writeRandomModel(TINYLLAVA, dir, dtype)}\n`);
}
