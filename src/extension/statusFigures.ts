/**
 * What the status bar item says when nothing runs: the last answer's figures (`$(zap) 3.1×`) and a Markdown tooltip
 * with what the answer cost, until a setting those figures depend on changes. Free of 'vscode' (statusBar.ts shows it).
 */
import { type AnswerStatsView, isReducedAnswer, providerLine, seedLine } from '../protocol/webview';
import { RULE_LABELS } from '../common/reductionChoice';

/** The item's text, its tooltip (Markdown, shown untrusted) and what a screen reader says. */
export interface StatusFiguresView {
  text: string;
  tooltip: string;
  label: string;
}

const PLAIN_TEXT = '$(zap) FiCoCo';
const CLICK_HINT = 'Click to change the reduction.';

export class StatusFigures {
  /**
   * the last answer's text for the bar; `from`, where it came from when that matters; `body`, its figures;
   * `askedIn`, the settings generation it was asked in
   */
  private last: { text: string; from: string; body: string; askedIn: number } | undefined;
  private generation = 0;

  /** Counts the changes of a setting the figures depend on: an answer notes it when asked, and shows it with them. */
  get settingsGeneration(): number {
    return this.generation;
  }

  /**
   * An answer's figures, asked in settings generation `askedIn`; the speedup may come later, once the unreduced
   * baseline is measured.
   */
  showAnswer(stats: AnswerStatsView, askedIn: number): void {
    this.show({ text: statusText(stats), from: '', body: statsTable(stats) }, askedIn);
  }

  /** An answer from a server that runs no reduction of ours (vLLM, Ollama, …): nothing to measure. */
  showWithoutStats(server: string, askedIn: number): void {
    this.show(
      {
        text: '$(zap) reduction: not available on this server',
        from: ` from \`${server.replace(/`/g, '')}\``,
        body:
          "This server answers without FiCoCo's token reduction, so there is no speedup or overlay. Run " +
          '`ficoco serve` there for both.',
      },
      askedIn,
    );
  }

  /**
   * The model, engine or reduction changed: the bar drops the last figure, which a person would read as the new
   * setting's, and the tooltip keeps it, marked as the previous setting's, until the next answer.
   */
  settingsChanged(): void {
    this.generation++;
  }

  private show(figures: { text: string; from: string; body: string }, askedIn: number): void {
    // An answer asked before a settings change, ending late, leaves the figures of one asked after it.
    if (this.last && this.last.askedIn > askedIn) return;
    this.last = { ...figures, askedIn };
  }

  view(): StatusFiguresView {
    const { last } = this;
    if (!last) return { text: PLAIN_TEXT, tooltip: `FiCoCo: no answer yet. ${CLICK_HINT}`, label: 'FiCoCo' };
    // Asked before the last settings change: its figures describe settings no longer in force.
    if (last.askedIn < this.generation)
      return {
        text: PLAIN_TEXT,
        tooltip:
          '**FiCoCo** — the model or reduction settings changed since the last answer; the next answer shows its ' +
          `own figures.\n\nThe last answer${last.from}, with the previous settings:\n\n${last.body}\n\n${CLICK_HINT}`,
        label: 'FiCoCo',
      };
    return {
      text: last.text,
      tooltip: `**FiCoCo** — last answer${last.from}\n\n${last.body}\n\n${CLICK_HINT}`,
      label: `FiCoCo ${last.text.replace('$(zap) ', '')}`,
    };
  }
}

/**
 * `$(zap) 3.1×` when reduction measured faster; `≈1×` or `slower` when it did not (a ratio below 1 is never shown as
 * a speedup); the kept tokens until measured; `full tokens` without reduction.
 */
function statusText(stats: AnswerStatsView): string {
  const { speedup } = stats;
  if (speedup) {
    if (speedup.verdict === 'faster') return `$(zap) ${speedup.ratio.toFixed(1)}×`;
    return speedup.verdict === 'same' ? '$(zap) ≈1×' : '$(zap) slower';
  }
  if (!isReducedAnswer(stats)) return '$(zap) full tokens';
  return `$(zap) ${keptTokens(stats)}`;
}

/** The answer's figures as a Markdown table. */
function statsTable(stats: AnswerStatsView): string {
  const { reduction, speedup } = stats;
  const rows: [string, string][] = [
    [
      'reduction',
      reduction && isReducedAnswer(stats)
        ? `${reduction.method}, budget ${reduction.budget}`
        : 'off (every visual token)',
    ],
    ['chosen by', reduction ? `${RULE_LABELS[reduction.rule]}: ${reduction.why}` : 'your setting (reduction off)'],
    ['visual tokens kept', keptTokens(stats)],
    [
      'prefill speedup (measured)',
      speedup
        ? `${speedup.label}: median of ${speedup.pairs} paired warm runs of the ${speedup.timed}, middle half ` +
          `${speedup.low.toFixed(2)}–${speedup.high.toFixed(2)}×`
        : isReducedAnswer(stats)
          ? 'measuring…'
          : '1× (nothing reduced)',
    ],
    ['FLOPs saved (analytic)', stats.flopsRatio !== undefined ? `${(100 * (1 - stats.flopsRatio)).toFixed(0)} %` : '–'],
    ['provider', providerLine(stats)],
    ['time to first token', `${stats.ttftMs.toFixed(0)} ms`],
    ['decode', `${stats.decodeTokensPerSecond.toFixed(1)} tokens/s`],
  ];
  // Only a sampled answer has one: set as ficoco.seed, it gives the same answer again.
  if (stats.seed !== undefined) rows.push(['seed', seedLine(stats.seed)]);
  // Table cells are one line: a '|' or line break inside a value would break the row.
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
  return `| | |\n|---|---|\n${rows.map(([name, value]) => `| ${name} | ${cell(value)} |`).join('\n')}`;
}

function keptTokens(stats: AnswerStatsView): string {
  return stats.visualTokens.map((tokens) => `${tokens.atDecoder}/${tokens.original}`).join(' + ');
}
