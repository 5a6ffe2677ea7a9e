import { quantileLinear, softmax } from '../arrays';
import { Correlation, Split, correlationFrom } from '../paradigm';

/** Reads entry (i, j) of the site's head-averaged attention. */
export type AttentionAt = (query: number, key: number) => number;

export interface AdaptiveReceiverOptions {
  /** row quantile that sets the receiver threshold (FiCoCo: 0.998) */
  epsilon: number;
  /** '>' keeps values strictly above the quantile (official code), '≥' also the quantile itself (paper) */
  strict: boolean;
  /** the values are softmax probabilities (weights ∝ value) rather than logits (weights = softmax over J) */
  probabilities: boolean;
}

/**
 * FiCoCo's token-adaptive correlate: for source i with correlation row C_i over its candidates,
 * τ_i = quantile(C_i, ε), J_i = {j : C_ij > τ_i} (argmax when empty), α_ij = softmax of C_i restricted to J_i.
 */
export function adaptiveReceivers(split: Split, candidatesOf: (source: number) => ArrayLike<number>, correlationOf: (source: number, receiver: number) => number, options: AdaptiveReceiverOptions): Correlation {
  return correlationFrom(
    Array.from(split.sources, (source) => {
      const candidates = candidatesOf(source);
      const values = Float64Array.from(candidates, (j) => correlationOf(source, j));
      const tau = quantileLinear(values, options.epsilon);
      let chosen = Array.from(values.keys()).filter((k) => (options.strict ? values[k] > tau : values[k] >= tau));
      if (chosen.length === 0) chosen = [values.reduce((best, v, k) => (v > values[best] ? k : best), 0)];
      const picked = chosen.map((k) => values[k]);
      const total = picked.reduce((a, b) => a + b, 0);
      const weights = options.probabilities && total > 0 ? picked.map((v) => v / total) : Array.from(softmax(picked));
      return { receivers: chosen.map((k) => candidates[k]), weights };
    }),
  );
}
