import type { AnswerStatsView } from '../../src/protocol/webview';

/**
 * The stats of a reduced, sampled answer with every field the chat shows: reduction, speedup, overlay, a trimmed
 * history, the seed.
 */
export const REDUCED_ANSWER_STATS: AnswerStatsView = {
  visualTokens: [{ original: 144, atDecoder: 16 }],
  visionMs: 4,
  prefillMs: 8,
  ttftMs: 15,
  generatedTokens: 2,
  decodeTokensPerSecond: 300,
  provider: 'cpu',
  reduction: { method: 'ficoco-v', budget: '11%', rule: 'default', why: "FiCoCo's default." },
  flopsRatio: 0.2,
  speedup: {
    ratio: 3.1,
    low: 2.9,
    high: 3.3,
    pairs: 7,
    verdict: 'faster',
    label: '3.1× faster',
    timed: 'prefill (vision + language model) on cpu',
  },
  imageReductions: [{ rows: 2, cols: 2, patches: 'kmdk' }],
  historyTrimmed: { droppedMessages: 4, contextTokens: 512 },
  seed: 3_141_592_653,
};
