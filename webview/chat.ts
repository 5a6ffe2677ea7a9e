/**
 * The chat page: wires the transcript and the composer to the extension. Messages come in through
 * receive(); what the user does goes out through `post`. Says `ready` first so the extension sends its state.
 */
import { HostMessage, MessageError, WebviewMessage, parseHostMessage } from '../src/protocol/webview';
import { Composer, ImageReader, readImageFile } from './composer';
import { TranscriptView } from './transcriptView';

export interface ChatPage {
  /** applies one message from the extension; malformed ones are reported on the console and ignored */
  receive(data: unknown): void;
}

/**
 * The page's own state, kept by VS Code while the page is torn down (a hidden view, a tab in the background):
 * acquireVsCodeApi()'s getState and setState.
 */
export interface PageState {
  getState(): unknown;
  setState(state: unknown): void;
}

/** The unsent question, as the page saved it ('' when none). */
function savedDraft(state: PageState | undefined): string {
  const saved = state?.getState();
  return typeof saved === 'object' && saved !== null && typeof (saved as { draft?: unknown }).draft === 'string'
    ? (saved as { draft: string }).draft
    : '';
}

export function startChat(
  doc: Document,
  post: (message: WebviewMessage) => void,
  readImage: ImageReader = readImageFile,
  state?: PageState,
): ChatPage {
  const notice = doc.getElementById('notice')!;
  const notify = (message: string) => {
    notice.textContent = message;
    notice.hidden = message === '';
  };
  const transcript = new TranscriptView(doc.getElementById('transcript')!, {
    stop: (turnId) => post({ type: 'stop', turnId }),
    compare: (turnId) => post({ type: 'compare', turnId }),
    copy: (text) => post({ type: 'copy', text }),
    insert: (text) => post({ type: 'insert', text }),
  });
  // The extension keeps the conversation; the page keeps only the question being typed, which a hidden page would lose.
  const draft = { text: savedDraft(state), save: (text: string) => state?.setState({ draft: text }) };
  const composer = new Composer(doc, post, notify, readImage, draft);
  doc.addEventListener('keydown', (event) => {
    // An Escape that ends an IME composition is the input method's, not a Stop.
    if (event.key !== 'Escape' || event.isComposing) return;
    const running = transcript.runningTurnId();
    if (running) transcript.stop(running);
  });
  post({ type: 'ready' });
  return {
    receive(data) {
      let message: HostMessage;
      try {
        message = parseHostMessage(data);
      } catch (error) {
        if (!(error instanceof MessageError)) throw error;
        console.error(`FiCoCo: ignored a message from the extension: ${error.message}`);
        return;
      }
      switch (message.type) {
        case 'state':
          transcript.showTurns(message.turns);
          composer.showPending(message.pending);
          notify(message.notice ?? '');
          return;
        case 'turnAdded':
          transcript.addTurn(message.turn);
          return;
        case 'turnUpdated':
          transcript.updateTurn(message.turn);
          return;
        case 'replyText':
          transcript.appendText(message.turnId, message.reply, message.text);
          return;
        case 'replyProgress':
          transcript.showProgress(message.turnId, message.reply, message.label);
          return;
        case 'pending':
          composer.showPending(message.pending);
          return;
        case 'notice':
          notify(message.message);
          return;
        case 'questionHeld':
          composer.holdQuestion(message.question, message.message);
          return;
      }
    },
  };
}
