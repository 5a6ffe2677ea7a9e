/**
 * A LLaVA folder's Llama decoder as a GGUF file llama.cpp loads: the same weights under llama.cpp's tensor names,
 * with Q and K rows permuted from Hugging Face's rotate-half layout to llama.cpp's interleaved rotary pairs (as its
 * convert_hf_to_gguf.py does), and a placeholder SentencePiece vocabulary of the model's size (ids are what the
 * benchmark feeds; text never goes through it).
 */
import { type GgmlType, type GgufTensor, type GgufValue, writeGguf } from '../../tools/ggufWriter';
import { WeightIndex } from '../../src/engine/weights/safetensors';

export interface LlamaShape {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  rmsEps: number;
  ropeTheta: number;
  maxPositions: number;
}

/** general.file_type (llama_ftype) of a file whose matrices are all in one type. */
const FILE_TYPE: Record<GgmlType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

/** The text_config of a LLaVA config.json (a Llama decoder), as the GGUF metadata needs it. */
export function llamaShape(config: { text_config: Record<string, number> }): LlamaShape {
  const t = config.text_config;
  return {
    hidden: t.hidden_size,
    intermediate: t.intermediate_size,
    layers: t.num_hidden_layers,
    heads: t.num_attention_heads,
    kvHeads: t.num_key_value_heads ?? t.num_attention_heads,
    headDim: t.head_dim ?? t.hidden_size / t.num_attention_heads,
    vocab: t.vocab_size,
    rmsEps: t.rms_norm_eps,
    ropeTheta: t.rope_theta ?? 10000,
    maxPositions: t.max_position_embeddings,
  };
}

/**
 * Rows of a [heads · headDim, in] projection reordered so rotary pairs sit side by side: new row (h, i, j) is old row
 * (h, j, i) for i < headDim/2, j < 2.
 */
export function interleaveRotaryRows(weight: Float32Array, heads: number, columns: number): Float32Array {
  const headDim = weight.length / columns / heads;
  const half = headDim / 2;
  const out = new Float32Array(weight.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const from = (h * headDim + j * half + i) * columns;
        out.set(weight.subarray(from, from + columns), (h * headDim + 2 * i + j) * columns);
      }
  return out;
}

/** Writes `modelDir`'s decoder to `file`, its matrices in `type` (norms stay F32, as llama.cpp keeps them). */
export function writeLlamaGguf(modelDir: string, shape: LlamaShape, type: GgmlType, file: string): void {
  const weights = WeightIndex.open(modelDir);
  const source = (name: string) => `language_model.${name}`;
  const tensor = (name: string, from: string, matrix: boolean, permuteHeads?: number): GgufTensor => {
    const location = weights.get(source(from));
    const columns = location.shape[location.shape.length - 1];
    return {
      name,
      shape: location.shape,
      type: matrix ? type : 'F32',
      values: () => {
        const values = weights.readFloat32(location.name);
        return permuteHeads ? interleaveRotaryRows(values, permuteHeads, columns) : values;
      },
    };
  };
  const tensors: GgufTensor[] = [tensor('token_embd.weight', 'model.embed_tokens.weight', true)];
  for (let l = 0; l < shape.layers; l++) {
    const layer = `model.layers.${l}`;
    tensors.push(
      tensor(`blk.${l}.attn_norm.weight`, `${layer}.input_layernorm.weight`, false),
      tensor(`blk.${l}.attn_q.weight`, `${layer}.self_attn.q_proj.weight`, true, shape.heads),
      tensor(`blk.${l}.attn_k.weight`, `${layer}.self_attn.k_proj.weight`, true, shape.kvHeads),
      tensor(`blk.${l}.attn_v.weight`, `${layer}.self_attn.v_proj.weight`, true),
      tensor(`blk.${l}.attn_output.weight`, `${layer}.self_attn.o_proj.weight`, true),
      tensor(`blk.${l}.ffn_norm.weight`, `${layer}.post_attention_layernorm.weight`, false),
      tensor(`blk.${l}.ffn_gate.weight`, `${layer}.mlp.gate_proj.weight`, true),
      tensor(`blk.${l}.ffn_up.weight`, `${layer}.mlp.up_proj.weight`, true),
      tensor(`blk.${l}.ffn_down.weight`, `${layer}.mlp.down_proj.weight`, true),
    );
  }
  tensors.push(
    tensor('output_norm.weight', 'model.norm.weight', false),
    tensor('output.weight', 'lm_head.weight', true),
  );
  writeGguf(file, llamaMetadata(shape, type), tensors);
}

function llamaMetadata(shape: LlamaShape, type: GgmlType): Record<string, GgufValue> {
  const u32 = (value: number): GgufValue => ({ type: 'u32', value });
  const f32 = (value: number): GgufValue => ({ type: 'f32', value });
  // Llama's layout: <unk>, <s>, </s>, the 256 byte tokens (llama.cpp falls back to them for any text), then pieces.
  const bytesEnd = 259;
  if (shape.vocab < bytesEnd)
    throw new RangeError(`a vocabulary of ${shape.vocab} has no room for the ${bytesEnd} control and byte tokens`);
  const tokens = Array.from({ length: shape.vocab }, (_, id) =>
    id < 3
      ? ['<unk>', '<s>', '</s>'][id]
      : id < bytesEnd
        ? `<0x${(id - 3).toString(16).toUpperCase().padStart(2, '0')}>`
        : `▁t${id}`,
  );
  const tokenTypes = tokens.map((_, id) => (id === 0 ? 2 : id < 3 ? 3 : id < bytesEnd ? 6 : 1));
  return {
    'general.architecture': { type: 'string', value: 'llama' },
    'general.name': { type: 'string', value: `random llama ${shape.layers}L ${shape.hidden}` },
    'general.file_type': u32(FILE_TYPE[type]),
    'llama.context_length': u32(shape.maxPositions),
    'llama.embedding_length': u32(shape.hidden),
    'llama.block_count': u32(shape.layers),
    'llama.feed_forward_length': u32(shape.intermediate),
    'llama.rope.dimension_count': u32(shape.headDim),
    'llama.attention.key_length': u32(shape.headDim),
    'llama.attention.value_length': u32(shape.headDim),
    'llama.attention.head_count': u32(shape.heads),
    'llama.attention.head_count_kv': u32(shape.kvHeads),
    'llama.attention.layer_norm_rms_epsilon': f32(shape.rmsEps),
    'llama.rope.freq_base': f32(shape.ropeTheta),
    'tokenizer.ggml.model': { type: 'string', value: 'llama' },
    'tokenizer.ggml.tokens': { type: 'array', itemType: 'string', values: tokens },
    'tokenizer.ggml.scores': { type: 'array', itemType: 'f32', values: tokens.map((_, id) => -id) },
    'tokenizer.ggml.token_type': { type: 'array', itemType: 'i32', values: tokenTypes },
    'tokenizer.ggml.unknown_token_id': u32(0),
    'tokenizer.ggml.bos_token_id': u32(1),
    'tokenizer.ggml.eos_token_id': u32(2),
  };
}
