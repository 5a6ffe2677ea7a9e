/** The FLOPs / KV-cache table the CLI prints, for reductions between the projector and the LLM. */
import { kvCacheBytes } from './llm';
import { ModelArch, reducedBeforeLlmShape, runFlops, unreducedShape } from './model';

export interface FlopsRow {
  visualTokens: number;
  /** tokens entering every decoder layer: visualTokens + textTokens */
  llmTokens: number;
  /** decoder prefill FLOPs, LLM-Viewer accounting (the paper's TFLOPs × 10¹²) */
  llm: number;
  vision: number;
  projector: number;
  total: number;
  /** llm / unreduced llm */
  llmRatio: number;
  /** total / unreduced total */
  totalRatio: number;
  /** KV cache after prefill, fp16 */
  kvBytes: number;
}

/**
 * One row per budget (visual tokens kept, one image): the vision tower and the projector run in full, every decoder
 * layer sees the kept visual tokens plus `textTokens`.
 */
export function flopsRows(arch: ModelArch, textTokens: number, visualBudgets: readonly number[]): FlopsRow[] {
  const base = runFlops(arch, unreducedShape(arch, { images: 1, textTokens }));
  return visualBudgets.map((visualTokens) => {
    const shape = reducedBeforeLlmShape(arch, { images: 1, textTokens, visualTokens });
    const flops = runFlops(arch, shape);
    return {
      visualTokens,
      llmTokens: visualTokens + textTokens,
      ...flops,
      llmRatio: flops.llm / base.llm,
      totalRatio: flops.total / base.total,
      kvBytes: kvCacheBytes(arch.llm, shape.llm, 2),
    };
  });
}

/** The unit FLOPs up to `largest` read best in: TFLOPs for a 7B model's prefill, MFLOPs for the built-in model's. */
export function flopsUnit(largest: number): { name: 'TFLOPs' | 'GFLOPs' | 'MFLOPs'; divisor: number } {
  if (largest >= 1e12) return { name: 'TFLOPs', divisor: 1e12 };
  return largest >= 1e9 ? { name: 'GFLOPs', divisor: 1e9 } : { name: 'MFLOPs', divisor: 1e6 };
}

/** The rows of flopsRows() as a markdown table. */
export function flopsTable(arch: ModelArch, textTokens: number, visualBudgets: readonly number[]): string {
  const rows = flopsRows(arch, textTokens, visualBudgets);
  const { name, divisor } = flopsUnit(Math.max(...rows.map((row) => row.total)));
  const inUnit = (flops: number): string => (flops / divisor).toFixed(2);
  const header = [
    'visual tokens kept',
    'LLM tokens',
    `LLM prefill ${name}`,
    `vision + projector ${name}`,
    `total ${name}`,
    'LLM vs unreduced',
    'total vs unreduced',
    'KV cache MB (fp16)',
  ];
  const lines = [
    `| ${header.join(' | ')} |`,
    `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map(
      (r) =>
        `| ${[
          `${r.visualTokens}/${arch.visualTokensPerImage}`,
          String(r.llmTokens),
          inUnit(r.llm),
          inUnit(r.vision + r.projector),
          inUnit(r.total),
          `${(r.llmRatio * 100).toFixed(1)} % (${(1 / r.llmRatio).toFixed(1)}×)`,
          `${(r.totalRatio * 100).toFixed(1)} %`,
          (r.kvBytes / 1e6).toFixed(1),
        ].join(' | ')} |`,
    ),
  ];
  return lines.join('\n');
}
