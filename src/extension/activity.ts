/**
 * Whether the chat has anything in flight (an answer, a comparison, a speedup measurement), for the `ficoco.answering`
 * context key that shows "FiCoCo: Stop Answering" only when there is something to stop; and what the status bar says
 * while several things run at once (those, and a model download). Free of 'vscode'.
 */
/** True while an answer, a comparison or a speedup measurement runs (package.json's `when` for ficoco.stop). */
export const ANSWERING_CONTEXT = 'ficoco.answering';

export interface Activity {
  busy(): void;
  idle(): void;
}

/** Passes busy and idle on to `inner`, and calls `onChange` when the first thing starts and when the last one ends. */
export function countedActivity(inner: Activity, onChange: (busy: boolean) => void): Activity {
  let active = 0;
  return {
    busy() {
      inner.busy();
      if (active++ === 0) onChange(true);
    },
    idle() {
      inner.idle();
      if (active === 0) return;
      if (--active === 0) onChange(false);
    },
  };
}

/** A status line: a spinner with what runs, or, idle, the last answer's figures. */
export interface StatusLine {
  busy(label: string): void;
  idle(): void;
}

/**
 * What `line` says while several things run at once (replies, speedup measurements, a model download), by key,
 * newest last: one ending puts the newest other's back, and the line goes idle only once none runs.
 */
export class StatusActivities<Line extends StatusLine = StatusLine> {
  private readonly labels = new Map<string, string>();

  /** `line`: read by those who show figures on it (a reply notes its settings generation when asked) */
  constructor(readonly line: Line) {}

  /** Says what `key` is doing now; it is the newest activity until another reports. */
  busy(key: string, label: string): void {
    this.labels.delete(key);
    this.labels.set(key, label);
    this.line.busy(label);
  }

  /** Shows the figures `key` ends with (`show`), then the newest activity still running over them, if any. */
  showFigures(key: string, show: (line: Line) => void): void {
    this.labels.delete(key);
    this.changeFigures(show);
  }

  /** Changes the figures the line shows when idle (`change`), keeping the newest activity running over them. */
  changeFigures(change: (line: Line) => void): void {
    change(this.line);
    this.showNewest();
  }

  /** `keys` have ended: the newest activity still running shows, else the line goes idle. */
  end(...keys: string[]): void {
    for (const key of keys) this.labels.delete(key);
    if (!this.showNewest()) this.line.idle();
  }

  /** Puts the newest activity running back on the line; false when there is none. */
  private showNewest(): boolean {
    const label = [...this.labels.values()].at(-1);
    if (label === undefined) return false;
    this.line.busy(label);
    return true;
  }
}
