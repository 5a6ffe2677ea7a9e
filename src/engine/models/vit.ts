/**
 * What CLIP and SigLIP vision towers share: the tower kind around a config parser, the pixel input, the patch
 * convolution, and the pre-LN encoder layer (layer_norm1 → attention → residual, layer_norm2 → fc1 → activation →
 * fc2 → residual) under the same weight names. Each tower's own file adds its defaults and its embeddings.
 */
import { attention } from '../graph/attention';
import { ElemType } from '../graph/builder';
import { activation, layerNorm, linear } from '../graph/ops';
import { Block, SegmentScope } from '../graph/segment';
import { TensorLocation } from '../weights/safetensors';
import type { VisionConfig, VisionTowerKind } from './family';
import { Fields, Json } from './fields';
import { LinearWeights, WeightScope, bindAttention, bindLinear } from './weights';

export const PIXEL_VALUES = 'pixel_values';

/** The ViT-B/16-224 sizes transformers' CLIP and SigLIP vision configs both default to. */
export const VIT_BASE_DEFAULTS: Json = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  image_size: 224,
};

/** A ViT tower kind: its config over its defaults, then its embeddings and the shared encoder layers. */
export function vitTowerKind(tower: {
  modelType: string;
  defaults: Json;
  classToken: boolean;
  embeddings: (config: VisionConfig, weights: WeightScope) => Block;
}): VisionTowerKind {
  return {
    weightPrefixes: ['vision_tower.vision_model.', 'model.vision_tower.vision_model.'],
    probe: 'embeddings.patch_embedding.weight',
    parseConfig: (json, source) => parseVitConfig(json, source, tower),
    tower: (config, weights, lastLayer) => ({
      input: { name: PIXEL_VALUES, elemType: ElemType.float32, dims: [3, config.imageSize, config.imageSize] },
      blocks: vitBlocks(config, weights, tower.embeddings(config, weights), lastLayer),
    }),
  };
}

/** The image [3, H, W] cut into patch rows [patches, width] by a strided convolution (with a bias where given). */
export function patchRows(
  scope: SegmentScope,
  pixels: string,
  config: VisionConfig,
  conv: { weight: TensorLocation; bias?: TensorLocation },
): string {
  const { g } = scope;
  const { hiddenSize: width, patchSize } = config;
  const image = g.op('Unsqueeze', [pixels, g.int64s('axes.0', [0])], 'vision.embed.image');
  const inputs = [image, scope.weight(conv.weight), ...(conv.bias ? [scope.weight(conv.bias)] : [])];
  const grid = g.op('Conv', inputs, 'vision.embed.grid', { strides: [patchSize, patchSize] });
  return g.op(
    'Transpose',
    [g.op('Reshape', [grid, g.int64s(`shape.${width}x-1`, [width, -1])], 'vision.embed.flat')],
    'vision.embed.patches',
    { perm: [1, 0] },
  );
}

function parseVitConfig(
  json: Json,
  source: string,
  tower: { modelType: string; defaults: Json; classToken: boolean },
): VisionConfig {
  const f = new Fields({ ...tower.defaults, ...json }, source, 'vision_config.');
  const hiddenSize = f.int('hidden_size', 1);
  const heads = f.int('num_attention_heads', 1);
  f.check(hiddenSize % heads === 0, 'hidden_size', `must be divisible by num_attention_heads (${heads})`);
  const imageSize = f.int('image_size', 1);
  const patchSize = f.int('patch_size', 1);
  f.check(patchSize <= imageSize, 'patch_size', `must be at most image_size (${imageSize})`);
  return {
    modelType: tower.modelType,
    hiddenSize,
    intermediateSize: f.int('intermediate_size', 1),
    layers: f.int('num_hidden_layers', 1),
    heads,
    imageSize,
    patchSize,
    patchesPerSide: Math.floor(imageSize / patchSize),
    layerNormEps: f.positive('layer_norm_eps'),
    activation: f.activation('hidden_act'),
    classToken: tower.classToken,
  };
}

/**
 * The embeddings block, then an attention block and an MLP block per layer up to `lastLayer`. Hook site
 * `vision:<l>` sits between layer l's attention residual and its MLP, where ToMe and FiCoCo-V reduce; `features`
 * follows the last layer.
 */
function vitBlocks(config: VisionConfig, weights: WeightScope, embeddings: Block, lastLayer: number): Block[] {
  return [
    embeddings,
    ...Array.from({ length: lastLayer + 1 }, (_, l) => vitLayer(config, weights, l, l === lastLayer)).flat(),
  ];
}

function vitLayer(config: VisionConfig, weights: WeightScope, layer: number, isLast: boolean): Block[] {
  const { hiddenSize: width, intermediateSize, heads, layerNormEps } = config;
  const at = (name: string) => `encoder.layers.${layer}.${name}`;
  const norm = (name: string) => ({
    weight: weights.get(at(`${name}.weight`), [width]),
    bias: weights.get(at(`${name}.bias`), [width]),
  });
  const projection = (name: string): LinearWeights =>
    weights.linear(at(`self_attn.${name}`), width, width, { bias: true, quantizable: 'many' });
  const norm1 = norm('layer_norm1');
  const norm2 = norm('layer_norm2');
  const projections = {
    q: projection('q_proj'),
    k: projection('k_proj'),
    v: projection('v_proj'),
    o: projection('out_proj'),
  };
  const fc1 = weights.linear(at('mlp.fc1'), width, intermediateSize, { bias: true, quantizable: 'many' });
  const fc2 = weights.linear(at('mlp.fc2'), intermediateSize, width, { bias: true, quantizable: 'many' });
  const name = `vision.l${layer}`;
  const attentionBlock: Block = {
    id: `${name}.attn`,
    site: `vision:${layer}`,
    attends: true,
    layer,
    width,
    emit(scope, x, expose) {
      const { g } = scope;
      const normed = layerNorm(g, x, scope.weight(norm1.weight), scope.weight(norm1.bias), layerNormEps, `${name}.ln1`);
      const result = attention(
        g,
        normed,
        bindAttention(scope, projections),
        { heads, kvHeads: heads, headDim: width / heads },
        { logSizes: scope.logSizes(), expose },
        `${name}.attn`,
      );
      return {
        hidden: g.op('Add', [x, result.out], `${name}.attn_residual`),
        attention: result.attention,
        meanKeys: result.meanKeys,
      };
    },
  };
  const mlpBlock: Block = {
    id: `${name}.mlp`,
    // After the last layer: post-ViT methods see the features ([CLS] included, if any) and this layer's attention.
    ...(isLast ? { site: 'features' } : {}),
    layer,
    width,
    emit(scope, h) {
      const { g } = scope;
      const normed = layerNorm(g, h, scope.weight(norm2.weight), scope.weight(norm2.bias), layerNormEps, `${name}.ln2`);
      const hidden = activation(
        g,
        linear(g, normed, bindLinear(scope, fc1), `${name}.fc1`),
        config.activation,
        `${name}.act`,
      );
      return { hidden: g.op('Add', [h, linear(g, hidden, bindLinear(scope, fc2), `${name}.fc2`)], `${name}.out`) };
    },
  };
  return [attentionBlock, mlpBlock];
}
