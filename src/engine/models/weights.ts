import { FicocoError } from '../../common/errors';
import type { AttentionWeights } from '../graph/attention';
import type { Linear } from '../graph/ops';
import type { SegmentScope } from '../graph/segment';
import type { ProductRows, QuantizedChannels, QuantizedLinear, WeightQuantizer } from '../weights/quantizedCache';
import type { TensorLocation, WeightIndex } from '../weights/safetensors';

/** The weights of one model piece, found under whichever name prefix this checkpoint uses. */
export class WeightScope {
  private constructor(
    private readonly index: WeightIndex,
    readonly prefix: string,
    private readonly quantizer: WeightQuantizer | undefined,
  ) {}

  /**
   * Picks the first prefix under which `probe` exists (transformers renamed llava weights in v4.52). With a
   * quantizer, the linear layers asked for as quantizable are quantized.
   */
  static find(
    index: WeightIndex,
    prefixes: string[],
    probe: string,
    what: string,
    quantizer?: WeightQuantizer,
  ): WeightScope {
    const prefix = prefixes.find((p) => index.has(p + probe));
    if (prefix === undefined) {
      throw new FicocoError(
        `The weights have no ${what}: expected a tensor named ${prefixes.map((p) => p + probe).join(' or ')}.`,
        'weights',
      );
    }
    return new WeightScope(index, prefix, quantizer);
  }

  get(suffix: string, shape: number[]): TensorLocation {
    const tensor = this.optional(suffix, shape);
    if (!tensor)
      throw new FicocoError(
        `The weights lack ${this.prefix + suffix} (expected shape [${shape.join(', ')}]).`,
        'weights',
      );
    return tensor;
  }

  optional(suffix: string, shape: number[]): TensorLocation | undefined {
    const name = this.prefix + suffix;
    if (!this.index.has(name)) return undefined;
    const tensor = this.index.get(name);
    const matches = tensor.shape.length === shape.length && tensor.shape.every((d, i) => d === shape[i]);
    if (!matches) {
      throw new FicocoError(
        `${name} has shape [${tensor.shape.join(', ')}] but config.json implies [${shape.join(', ')}]; the ` +
          `config and the weights do not belong together.`,
        'weights',
      );
    }
    return tensor;
  }

  /**
   * A linear layer `name` mapping `inFeatures` → `outFeatures`, with a bias when the config says so; `quantizable`
   * layers, which say how many rows they multiply at once, follow the quantizer. `tied`: another graph reads the same
   * float weight (a head sharing the embedding table), which quantizing this layer does not free.
   */
  linear(
    name: string,
    inFeatures: number,
    outFeatures: number,
    { bias, quantizable, tied = false }: { bias: boolean; quantizable?: ProductRows; tied?: boolean },
  ): LinearWeights {
    const weight = this.get(`${name}.weight`, [outFeatures, inFeatures]);
    return {
      weight,
      bias: bias ? this.get(`${name}.bias`, [outFeatures]) : undefined,
      quantized: quantizable && this.quantizer ? this.quantizer.request(weight, quantizable, tied) : undefined,
    };
  }
}

export interface LinearWeights {
  weight: TensorLocation;
  bias: TensorLocation | undefined;
  /** the layer's quantized form, readable once the quantizer has built its cache */
  quantized: (() => QuantizedLinear) | undefined;
}

/** An attention layer's four projections as values of the graph being built. */
export function bindAttention(
  scope: SegmentScope,
  projections: Record<keyof AttentionWeights, LinearWeights>,
): AttentionWeights {
  const { q, k, v, o } = projections;
  return { q: bindLinear(scope, q), k: bindLinear(scope, k), v: bindLinear(scope, v), o: bindLinear(scope, o) };
}

/** The linear layer's tensors as values of the graph being built. */
export function bindLinear(scope: SegmentScope, layer: LinearWeights): Linear {
  const bias = layer.bias && scope.weight(layer.bias);
  if (!layer.quantized) return { weight: scope.weight(layer.weight), bias };
  const forms = layer.quantized();
  const bytes = (tensor: TensorLocation) => scope.quantizedBytes(tensor);
  const bindChannels = ({ data, scales, sums }: QuantizedChannels) => ({
    data: bytes(data),
    scales: scope.weight(scales),
    sums: scope.weight(sums),
  });
  if (!forms.blocks) return { bias, quantized: { channels: bindChannels(forms.channels) } };
  const { blocks, channels } = forms;
  const boundBlocks = {
    ...blocks,
    data: bytes(blocks.data),
    scales: scope.weight(blocks.scales),
    zeroPoints: blocks.zeroPoints && bytes(blocks.zeroPoints),
  };
  return { bias, quantized: { blocks: boundBlocks, channels: channels && bindChannels(channels) } };
}
