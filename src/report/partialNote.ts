/** The note that heads a report rewritten as its run goes (eval, bench), until the run has done every step. */
export function partialNote(done: number, total: number, steps: string): string {
  return done < total
    ? `**Partial**: ${done} of ${total} ${steps}; the run stopped, or is still running, before the rest.\n\n`
    : '';
}
