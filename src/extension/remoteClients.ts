/**
 * The client of the remote engine the settings name (ficoco.engine, its model and API key). A changed address, model
 * or key gets a new client; the one it replaces finishes what it was asked (a Compare in progress) and is disposed
 * once the last of those ends. Free of 'vscode'.
 */
import type { CancellationToken } from 'vscode-jsonrpc/node';
import type { LoadParams } from '../protocol/engine';
import type { AnswerEngine, AnswerListeners, AskOptions, EngineAnswer } from '../client/engineClient';

export class RemoteClients {
  /** the client for the settings now, by a key that names them */
  private current: { key: string; client: RetiringClient } | undefined;

  /** The client for `key`, made by `create` when the key changed (`created` true); the one before retires. */
  client(key: string, create: () => AnswerEngine): { engine: AnswerEngine; created: boolean } {
    if (this.current?.key === key) return { engine: this.current.client, created: false };
    this.current?.client.retire();
    this.current = { key, client: new RetiringClient(create()) };
    return { engine: this.current.client, created: true };
  }

  /** The extension ends: the client now is disposed, and any retired one as soon as its questions end (cancelled). */
  dispose(): void {
    this.current?.client.retire();
    this.current = undefined;
  }
}

/** A client that counts the questions it answers, so that it can be disposed when the last one ends. */
class RetiringClient implements AnswerEngine {
  private asking = 0;
  private retired = false;

  constructor(private readonly inner: AnswerEngine) {}

  get processId(): number | undefined {
    return this.inner.processId;
  }

  async ask(
    model: LoadParams,
    question: AskOptions,
    listeners: AnswerListeners,
    token?: CancellationToken,
  ): Promise<EngineAnswer> {
    this.asking++;
    try {
      return await this.inner.ask(model, question, listeners, token);
    } finally {
      this.asking--;
      if (this.retired && this.asking === 0) this.inner.dispose();
    }
  }

  stop(): void {
    this.inner.stop();
  }

  /** No new client asks through it: disposed now when idle, else when its last question ends. */
  retire(): void {
    this.retired = true;
    if (this.asking === 0) this.inner.dispose();
  }

  dispose(): void {
    this.inner.dispose();
  }
}
