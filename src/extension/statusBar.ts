/**
 * One status bar item: the measured prefill speedup of the last answer (`$(zap) 3.1×`), a spinner while the
 * model loads or answers, and a tooltip with what the answer cost. Clicking it opens the reduction quick pick.
 */
import * as vscode from 'vscode';
import type { AnswerStatsView } from '../protocol/webview';

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

  /** A spinner with what the engine is doing ("Loading model", "Answering", "Measuring the unreduced baseline"). */
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

  dispose(): void {
    this.item.dispose();
  }
}

/** `$(zap) 3.1×` with a measured speedup; the kept tokens until then; `full tokens` without reduction. */
export function statusText(stats: AnswerStatsView): string {
  if (stats.speedup !== undefined) return `$(zap) ${stats.speedup.toFixed(1)}×`;
  if (!stats.reduction) return '$(zap) full tokens';
  return `$(zap) ${keptTokens(stats)}`;
}

export function statusTooltip(stats: AnswerStatsView): vscode.MarkdownString {
  const rows: [string, string][] = [
    [
      'reduction',
      stats.reduction ? `${stats.reduction.method}, budget ${stats.reduction.budget}` : 'off (every visual token)',
    ],
    ['visual tokens kept', keptTokens(stats)],
    [
      'prefill speedup (measured)',
      stats.speedup !== undefined
        ? `${stats.speedup.toFixed(2)}×`
        : stats.reduction
          ? 'measuring the unreduced baseline…'
          : '1×',
    ],
    ['FLOPs saved (analytic)', stats.flopsRatio !== undefined ? `${(100 * (1 - stats.flopsRatio)).toFixed(0)} %` : '–'],
    ['provider', stats.providerFallback ? `${stats.provider} (${stats.providerFallback})` : stats.provider],
    ['time to first token', `${stats.ttftMs.toFixed(0)} ms`],
    ['decode', `${stats.decodeTokensPerSecond.toFixed(1)} tokens/s`],
  ];
  const markdown = new vscode.MarkdownString(
    `**FiCoCo** — last answer\n\n| | |\n|---|---|\n${rows.map(([name, value]) => `| ${name} | ${value} |`).join('\n')}\n\nClick to change the reduction.`,
  );
  markdown.isTrusted = false;
  return markdown;
}

function keptTokens(stats: AnswerStatsView): string {
  return stats.visualTokens.map((tokens) => `${tokens.atDecoder}/${tokens.original}`).join(' + ');
}
