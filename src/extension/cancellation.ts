import type * as vscode from 'vscode';

/** An AbortSignal that follows a VS Code cancellation token: what the Node-side libraries (downloads, installs) take. */
export function abortSignalOf(token: vscode.CancellationToken): AbortSignal {
  const controller = new AbortController();
  if (token.isCancellationRequested) controller.abort();
  else token.onCancellationRequested(() => controller.abort());
  return controller.signal;
}
