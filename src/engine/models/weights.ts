import { FicocoError } from '../errors';
import type { Linear } from '../graph/ops';
import type { SegmentScope } from '../graph/segment';
import type { TensorLocation, WeightIndex } from '../weights/safetensors';

/** The weights of one model piece, found under whichever name prefix this checkpoint uses. */
export class WeightScope {
  private constructor(private readonly index: WeightIndex, readonly prefix: string) {}

  /** Picks the first prefix under which `probe` exists (transformers renamed llava weights in v4.52). */
  static find(index: WeightIndex, prefixes: string[], probe: string, what: string): WeightScope {
    const prefix = prefixes.find((p) => index.has(p + probe));
    if (prefix === undefined) {
      throw new FicocoError(`The weights have no ${what}: expected a tensor named ${prefixes.map((p) => p + probe).join(' or ')}.`, 'weights');
    }
    return new WeightScope(index, prefix);
  }

  get(suffix: string, shape: number[]): TensorLocation {
    const tensor = this.optional(suffix, shape);
    if (!tensor) throw new FicocoError(`The weights lack ${this.prefix + suffix} (expected shape [${shape.join(', ')}]).`, 'weights');
    return tensor;
  }

  optional(suffix: string, shape: number[]): TensorLocation | undefined {
    const name = this.prefix + suffix;
    if (!this.index.has(name)) return undefined;
    const tensor = this.index.get(name);
    const matches = tensor.shape.length === shape.length && tensor.shape.every((d, i) => d === shape[i]);
    if (!matches) {
      throw new FicocoError(`${name} has shape [${tensor.shape.join(', ')}] but config.json implies [${shape.join(', ')}]; the config and the weights do not belong together.`, 'weights');
    }
    return tensor;
  }

  /** A linear layer `name` mapping `inFeatures` → `outFeatures`, with a bias when the config says so. */
  linear(name: string, inFeatures: number, outFeatures: number, bias: boolean): LinearWeights {
    return {
      weight: this.get(`${name}.weight`, [outFeatures, inFeatures]),
      bias: bias ? this.get(`${name}.bias`, [outFeatures]) : undefined,
    };
  }
}

export interface LinearWeights {
  weight: TensorLocation;
  bias: TensorLocation | undefined;
}

/** The linear layer's tensors as values of the graph being built. */
export function bindLinear(scope: SegmentScope, layer: LinearWeights): Linear {
  return { weight: scope.weight(layer.weight), bias: layer.bias && scope.weight(layer.bias) };
}
