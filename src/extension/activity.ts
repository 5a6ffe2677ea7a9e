/**
 * Whether the chat has anything in flight (an answer, a comparison, a speedup measurement), for the `ficoco.answering`
 * context key that shows "FiCoCo: Stop Answering" only when there is something to stop. Free of 'vscode'.
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
