import { attention } from '../graph/attention';
import { ElemType } from '../graph/builder';
import { activation, layerNorm, linear } from '../graph/ops';
import { Block } from '../graph/segment';
import type { VisionConfig, VisionTowerKind } from './family';
import { Fields, Json } from './fields';
import { LinearWeights, WeightScope, bindLinear } from './weights';

export const PIXEL_VALUES = 'pixel_values';

/** transformers' CLIPVisionConfig defaults, for fields a config leaves out. */
const CLIP_DEFAULTS: Json = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  image_size: 224,
  patch_size: 32,
  layer_norm_eps: 1e-5,
  hidden_act: 'quick_gelu',
};

/** The CLIP vision tower (vision_config.model_type clip_vision_model), with a [CLS] token before the patches. */
export const clipVisionTower: VisionTowerKind = {
  weightPrefixes: ['vision_tower.vision_model.', 'model.vision_tower.vision_model.'],
  probe: 'embeddings.patch_embedding.weight',
  parseConfig: parseClipConfig,
  tower: (config, weights, lastLayer) => ({
    input: clipPixelInput(config),
    blocks: clipVisionBlocks(config, weights, lastLayer),
  }),
};

function parseClipConfig(json: Json, source: string): VisionConfig {
  const f = new Fields({ ...CLIP_DEFAULTS, ...json }, source, 'vision_config.');
  const hiddenSize = f.int('hidden_size', 1);
  const heads = f.int('num_attention_heads', 1);
  f.check(hiddenSize % heads === 0, 'hidden_size', `must be divisible by num_attention_heads (${heads})`);
  const imageSize = f.int('image_size', 1);
  const patchSize = f.int('patch_size', 1);
  f.check(imageSize % patchSize === 0, 'image_size', `must be a multiple of patch_size (${patchSize})`);
  return {
    modelType: 'clip_vision_model',
    hiddenSize,
    intermediateSize: f.int('intermediate_size', 1),
    layers: f.int('num_hidden_layers', 1),
    heads,
    imageSize,
    patchSize,
    layerNormEps: f.number('layer_norm_eps'),
    activation: f.activation('hidden_act'),
    classToken: true,
  };
}

/**
 * CLIP vision tower (pre-LN ViT with a [CLS] token) as blocks: the embeddings, then an attention
 * block and an MLP block per layer up to `lastLayer`. Hook site `vision:<l>` sits between layer l's
 * attention residual and its MLP, where ToMe and FiCoCo-V reduce; `features` follows the last layer.
 */
function clipVisionBlocks(config: VisionConfig, weights: WeightScope, lastLayer: number): Block[] {
  return [
    clipEmbeddings(config, weights),
    ...Array.from({ length: lastLayer + 1 }, (_, l) => clipLayer(config, weights, l, l === lastLayer)).flat(),
  ];
}

function clipPixelInput(config: VisionConfig) {
  return { name: PIXEL_VALUES, elemType: ElemType.float32, dims: [3, config.imageSize, config.imageSize] };
}

function clipEmbeddings(config: VisionConfig, weights: WeightScope): Block {
  const { hiddenSize: width, patchSize, imageSize } = config;
  const patches = (imageSize / patchSize) ** 2;
  const classEmbedding = weights.get('embeddings.class_embedding', [width]);
  const patchEmbedding = weights.get('embeddings.patch_embedding.weight', [width, 3, patchSize, patchSize]);
  const positionEmbedding = weights.get('embeddings.position_embedding.weight', [patches + 1, width]);
  const preNorm = {
    weight: weights.get('pre_layrnorm.weight', [width]),
    bias: weights.get('pre_layrnorm.bias', [width]),
  };
  return {
    id: 'vision.embed',
    width,
    emit(scope, pixels) {
      const { g } = scope;
      const image = g.op('Unsqueeze', [pixels, g.int64s('axes.0', [0])], 'vision.embed.image');
      const grid = g.op('Conv', [image, scope.weight(patchEmbedding)], 'vision.embed.grid', {
        strides: [patchSize, patchSize],
      });
      const patchRows = g.op(
        'Transpose',
        [g.op('Reshape', [grid, g.int64s(`shape.${width}x-1`, [width, -1])], 'vision.embed.flat')],
        'vision.embed.patches',
        { perm: [1, 0] },
      );
      const cls = g.op('Unsqueeze', [scope.weight(classEmbedding), g.int64s('axes.0', [0])], 'vision.embed.cls');
      const tokens = g.op('Concat', [cls, patchRows], 'vision.embed.tokens', { axis: 0 });
      const positioned = g.op('Add', [tokens, scope.weight(positionEmbedding)], 'vision.embed.positioned');
      return {
        hidden: layerNorm(
          g,
          positioned,
          scope.weight(preNorm.weight),
          scope.weight(preNorm.bias),
          config.layerNormEps,
          'vision.embed.out',
        ),
      };
    },
  };
}

function clipLayer(config: VisionConfig, weights: WeightScope, layer: number, isLast: boolean): Block[] {
  const { hiddenSize: width, intermediateSize, heads, layerNormEps } = config;
  const at = (name: string) => `encoder.layers.${layer}.${name}`;
  const norm = (name: string) => ({
    weight: weights.get(at(`${name}.weight`), [width]),
    bias: weights.get(at(`${name}.bias`), [width]),
  });
  const projection = (name: string): LinearWeights =>
    weights.linear(at(`self_attn.${name}`), width, width, { bias: true });
  const norm1 = norm('layer_norm1');
  const norm2 = norm('layer_norm2');
  const q = projection('q_proj');
  const k = projection('k_proj');
  const v = projection('v_proj');
  const o = projection('out_proj');
  const fc1 = weights.linear(at('mlp.fc1'), width, intermediateSize, { bias: true });
  const fc2 = weights.linear(at('mlp.fc2'), intermediateSize, width, { bias: true });
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
      const shape = { heads, kvHeads: heads, headDim: width / heads };
      const weightsBound = {
        q: bindLinear(scope, q),
        k: bindLinear(scope, k),
        v: bindLinear(scope, v),
        o: bindLinear(scope, o),
      };
      const result = attention(
        g,
        normed,
        weightsBound,
        shape,
        { causal: false, logSizes: scope.logSizes(), expose },
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
    // After the tower's last layer: post-ViT methods see the features with [CLS] and this layer's attention.
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
