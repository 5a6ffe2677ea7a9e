/**
 * One status bar item: the measured prefill speedup of the last answer (`$(zap) 3.1×`), a spinner while the
 * model loads or answers, and a tooltip with what the answer cost. Clicking it opens the reduction quick pick.
 */
import * as vscode from 'vscode';
import { type AnswerStatsView, isReducedAnswer, providerLine } from '../protocol/webview';
import { RULE_LABELS } from '../common/reductionChoice';

export const CHOOSE_REDUCTION_COMMAND = 'ficoco.chooseReduction';

export class SpeedupStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('ficoco.speedup', vscode.StatusBarAlignment.Right, 100);
  private last: { text: string; tooltip: vscode.MarkdownString } | undefined;

  constructor() {
    this.item.name = 'FiCoCo speedup';
    this.item.command = CHOOSE_REDUCTION_COMMAND;
    this.idle();
    this.item.show();
  }

  /** What the item shows now, e.g. `$(zap) 3.1×`. */
  get text(): string {
    return this.item.text;
  }

  /** A spinner with what the engine is doing ("Loading model", "Answering", "Measuring the speedup"). */
  busy(activity: string): void {
    this.item.text = `$(loading~spin) ${activity}`;
    this.item.tooltip = `FiCoCo: ${activity}. Click to choose the reduction method.`;
    this.item.accessibilityInformation = { label: `FiCoCo: ${activity}` };
  }

  /** Back to the last answer's figures (or the plain label before the first answer). */
  idle(): void {
    this.item.text = this.last?.text ?? '$(zap) FiCoCo';
    this.item.tooltip = this.last?.tooltip ?? 'FiCoCo: no answer yet. Click to choose the reduction method.';
    this.item.accessibilityInformation = {
      label: this.last ? `FiCoCo ${this.last.text.replace('$(zap) ', '')}` : 'FiCoCo',
    };
  }

  /** Shows an answer's figures; the speedup may come later, once the unreduced baseline is measured. */
  showAnswer(stats: AnswerStatsView): void {
    this.last = { text: statusText(stats), tooltip: statusTooltip(stats) };
    this.idle();
  }

  /** An answer from a server that runs no reduction of ours (vLLM, Ollama, …): nothing to measure. */
  showWithoutStats(server: string): void {
    const tooltip = new vscode.MarkdownString(
      `**FiCoCo** — last answer from \`${server.replace(/`/g, '')}\`\n\nThis server answers without FiCoCo's token ` +
        'reduction, so there is no speedup or overlay. Run `ficoco serve` there for both.',
    );
    tooltip.isTrusted = false;
    this.last = { text: '$(zap) reduction: not available on this server', tooltip };
    this.idle();
  }

  dispose(): void {
    this.item.dispose();
  }
}

/**
 * `$(zap) 3.1×` when reduction measured faster; `≈1×` or `slower` when it did not (a ratio below 1 is never shown as
 * a speedup); the kept tokens until measured; `full tokens` without reduction.
 */
export function statusText(stats: AnswerStatsView): string {
  const { speedup } = stats;
  if (speedup) {
    if (speedup.verdict === 'faster') return `$(zap) ${speedup.ratio.toFixed(1)}×`;
    return speedup.verdict === 'same' ? '$(zap) ≈1×' : '$(zap) slower';
  }
  if (!isReducedAnswer(stats)) return '$(zap) full tokens';
  return `$(zap) ${keptTokens(stats)}`;
}

export function statusTooltip(stats: AnswerStatsView): vscode.MarkdownString {
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
  // Table cells are one line: a '|' or line break inside a value would break the row.
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
  const markdown = new vscode.MarkdownString(
    `**FiCoCo** — last answer\n\n| | |\n|---|---|\n${rows.map(([name, value]) => `| ${name} | ${cell(value)} |`).join('\n')}\n\nClick to change the reduction.`,
  );
  markdown.isTrusted = false;
  return markdown;
}

function keptTokens(stats: AnswerStatsView): string {
  return stats.visualTokens.map((tokens) => `${tokens.atDecoder}/${tokens.original}`).join(' + ');
}
