/**
 * One status bar item: the measured prefill speedup of the last answer (`$(zap) 3.1×`), a spinner while the
 * model loads or answers, and a tooltip with what the answer cost (statusFigures.ts). Clicking it opens the reduction
 * quick pick.
 */
import * as vscode from 'vscode';
import type { AnswerStatsView } from '../protocol/webview';
import { StatusFigures } from './statusFigures';

export const CHOOSE_REDUCTION_COMMAND = 'ficoco.chooseReduction';

export class SpeedupStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('ficoco.speedup', vscode.StatusBarAlignment.Right, 100);
  private readonly figures = new StatusFigures();

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

  /** Back to the last answer's figures (or the plain label before the first answer, or after a settings change). */
  idle(): void {
    const { text, tooltip, label } = this.figures.view();
    this.item.text = text;
    const markdown = new vscode.MarkdownString(tooltip);
    markdown.isTrusted = false;
    this.item.tooltip = markdown;
    this.item.accessibilityInformation = { label };
  }

  /** What an answer notes when asked, to show its figures with (StatusFigures.settingsGeneration). */
  get settingsGeneration(): number {
    return this.figures.settingsGeneration;
  }

  /**
   * Shows the figures of an answer asked in settings generation `askedIn`; the speedup may come later, once the
   * unreduced baseline is measured.
   */
  showAnswer(stats: AnswerStatsView, askedIn: number): void {
    this.figures.showAnswer(stats, askedIn);
    this.idle();
  }

  /** An answer from a server that runs no reduction of ours (vLLM, Ollama, …): nothing to measure. */
  showWithoutStats(server: string, askedIn: number): void {
    this.figures.showWithoutStats(server, askedIn);
    this.idle();
  }

  /** A setting the last answer's figures depend on changed (FIGURES_DEPEND_ON): they are no longer shown as current. */
  settingsChanged(): void {
    this.figures.settingsChanged();
    this.idle();
  }

  dispose(): void {
    this.item.dispose();
  }
}
