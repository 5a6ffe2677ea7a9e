import { attention } from '../graph/attention';
import { ElemType } from '../graph/builder';
import { activation, linear, rmsNorm } from '../graph/ops';
import { Block, Tower } from '../graph/segment';
import { TextConfig } from './config';
import { WeightScope, bindLinear } from './weights';

export const INPUT_IDS = 'input_ids';
export const EMBEDDINGS = 'embeddings';
export const LOGITS = 'logits';

/** Token ids → embedding rows. */
export function embeddingTower(config: TextConfig, weights: WeightScope): Tower {
  const table = weights.get('embed_tokens.weight', [config.vocabSize, config.hiddenSize]);
  return {
    name: 'embed',
    input: { name: INPUT_IDS, elemType: ElemType.int64, dims: ['tokens'] },
    output: { name: EMBEDDINGS, dims: ['tokens', config.hiddenSize] },
    blocks: [{
      id: 'text.embed',
      width: config.hiddenSize,
      emit: (scope, ids) => ({ hidden: scope.g.op('Gather', [scope.weight(table), ids], 'text.embed.rows', { axis: 0 }) }),
    }],
  };
}

/**
 * Llama-style decoder (Llama, Mistral, Qwen2: pre-RMSNorm, rotary positions, grouped-query
 * attention, SiLU-gated MLP) as an attention block and an MLP block per layer, then the head
 * producing the last position's logits. Hook site `llm:<l>` sits after layer l's attention residual.
 */
export function decoderTower(config: TextConfig, weights: WeightScope, lmHead: WeightScope): Tower {
  const layers = Array.from({ length: config.layers }, (_, l) => decoderLayer(config, weights, l)).flat();
  return {
    name: 'decoder',
    input: { name: EMBEDDINGS, elemType: ElemType.float32, dims: ['tokens', config.hiddenSize] },
    output: { name: LOGITS, dims: [1, config.vocabSize] },
    blocks: [...layers, decoderHead(config, weights, lmHead)],
  };
}

/** θ_i = base^(−2i/d), rounded to float32 as transformers computes it */
export function rotaryInverseFrequencies(headDim: number, base: number): Float32Array {
  return Float32Array.from({ length: headDim / 2 }, (_, i) => 1 / base ** ((2 * i) / headDim));
}

function decoderLayer(config: TextConfig, weights: WeightScope, layer: number): Block[] {
  const { hiddenSize: width, heads, kvHeads, headDim, intermediateSize, rmsNormEps } = config;
  const at = (name: string) => `layers.${layer}.${name}`;
  const inputNorm = weights.get(at('input_layernorm.weight'), [width]);
  const postNorm = weights.get(at('post_attention_layernorm.weight'), [width]);
  const q = weights.linear(at('self_attn.q_proj'), width, heads * headDim, config.qkvBias, true);
  const k = weights.linear(at('self_attn.k_proj'), width, kvHeads * headDim, config.qkvBias, true);
  const v = weights.linear(at('self_attn.v_proj'), width, kvHeads * headDim, config.qkvBias, true);
  const o = weights.linear(at('self_attn.o_proj'), heads * headDim, width, config.outputBias, true);
  const gate = weights.linear(at('mlp.gate_proj'), width, intermediateSize, config.mlpBias, true);
  const up = weights.linear(at('mlp.up_proj'), width, intermediateSize, config.mlpBias, true);
  const down = weights.linear(at('mlp.down_proj'), intermediateSize, width, config.mlpBias, true);
  const invFreq = rotaryInverseFrequencies(headDim, config.ropeTheta);
  const name = `text.l${layer}`;
  const attentionBlock: Block = {
    id: `${name}.attn`,
    site: `llm:${layer}`,
    attends: true,
    layer,
    width,
    cacheLayer: layer,
    emit(scope, x, expose) {
      const { g } = scope;
      const normed = rmsNorm(g, x, scope.weight(inputNorm), rmsNormEps, `${name}.input_norm`);
      const cache = scope.cache(layer);
      const bound = { q: bindLinear(scope, q), k: bindLinear(scope, k), v: bindLinear(scope, v), o: bindLinear(scope, o) };
      const result = attention(g, normed, bound, { heads, kvHeads, headDim }, { rotary: scope.rotary(invFreq), past: cache, causal: true, expose }, `${name}.attn`);
      cache.store(result.keys, result.values);
      return { hidden: g.op('Add', [x, result.out], `${name}.attn_residual`), attention: result.attention, meanKeys: result.meanKeys };
    },
  };
  const mlpBlock: Block = {
    id: `${name}.mlp`,
    layer,
    width,
    emit(scope, h) {
      const { g } = scope;
      const normed = rmsNorm(g, h, scope.weight(postNorm), rmsNormEps, `${name}.post_norm`);
      const gated = activation(g, linear(g, normed, bindLinear(scope, gate), `${name}.gate`), config.activation, `${name}.act`);
      const product = g.op('Mul', [gated, linear(g, normed, bindLinear(scope, up), `${name}.up`)], `${name}.gated`);
      return { hidden: g.op('Add', [h, linear(g, product, bindLinear(scope, down), `${name}.down`)], `${name}.out`) };
    },
  };
  return [attentionBlock, mlpBlock];
}

function decoderHead(config: TextConfig, weights: WeightScope, lmHead: WeightScope): Block {
  const finalNorm = weights.get('norm.weight', [config.hiddenSize]);
  const head = config.tieWordEmbeddings
    ? weights.linear('embed_tokens', config.hiddenSize, config.vocabSize, false)
    : lmHead.linear('lm_head', config.hiddenSize, config.vocabSize, false);
  return {
    id: 'text.head',
    width: config.vocabSize,
    emit(scope, x) {
      const { g } = scope;
      // Only the last position's logits are needed to pick the next token.
      const lastRow = g.op('Slice', [x, g.int64s('i.-1', [-1]), g.int64s('i.max', [Number.MAX_SAFE_INTEGER]), g.int64s('axes.0', [0])], 'text.head.last');
      const normed = rmsNorm(g, lastRow, scope.weight(finalNorm), config.rmsNormEps, 'text.head.norm');
      return { hidden: linear(g, normed, bindLinear(scope, head), 'text.head.logits') };
    },
  };
}
