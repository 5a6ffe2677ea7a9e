import { quantileLinear, softmax } from '../arrays';
import { Correlation, Split, correlationFrom } from '../paradigm';

export interface AdaptiveReceiverOptions {
  /** row quantile that sets the receiver threshold (FiCoCo: 0.998) */
  epsilon: number;
  /** '>' keeps values strictly above the quantile (official code), '≥' also the quantile itself (paper) */
  strict: boolean;
  /** the values are softmax probabilities (weights ∝ value) rather than logits (weights = softmax over J) */
  probabilities: boolean;
}

/** One source's correlation row: its candidate receivers and C_ij for each. */
export interface CorrelationRow {
  candidates: ArrayLike<number>;
  values: Float64Array;
}

/**
 * FiCoCo's token-adaptive correlate: for source i (the k-th of split.sources) with correlation row C_i over its
 * candidates,
 * τ_i = quantile(C_i, ε), J_i = {j : C_ij > τ_i} (argmax when empty), α_ij = softmax of C_i restricted to J_i.
 */
export function adaptiveReceivers(
  split: Split,
  rowOf: (source: number, k: number) => CorrelationRow,
  options: AdaptiveReceiverOptions,
): Correlation {
  return correlationFrom(
    Array.from(split.sources, (source, k) => {
      const { candidates, values } = rowOf(source, k);
      const tau = quantileLinear(values, options.epsilon);
      const chosen: number[] = [];
      let best = 0;
      for (let k = 0; k < values.length; k++) {
        if (options.strict ? values[k] > tau : values[k] >= tau) chosen.push(k);
        if (values[k] > values[best]) best = k;
      }
      if (chosen.length === 0) chosen.push(best);
      const picked = chosen.map((k) => values[k]);
      const total = picked.reduce((a, b) => a + b, 0);
      const weights = options.probabilities && total > 0 ? picked.map((v) => v / total) : Array.from(softmax(picked));
      return { receivers: chosen.map((k) => candidates[k]), weights };
    }),
  );
}
