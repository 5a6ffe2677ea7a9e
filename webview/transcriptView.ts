/**
 * Draws the transcript the extension sends and reports the user's actions back. Every function takes
 * the Document (or an element of it) so it runs under happy-dom in tests as well as in the webview.
 * Answers are plain text (textContent), never HTML: model output is not trusted markup.
 */
import { AnswerStatsView, AnswerStopReason, HostMessage, MessageError, Turn, WebviewMessage, parseHostMessage } from '../src/protocol/webview';

/** What the user can ask of the extension from the transcript. */
export interface TranscriptActions {
  stop(turnId: string): void;
}

export interface TranscriptView {
  /** applies one message from the extension; malformed ones are reported on the console and ignored */
  receive(data: unknown): void;
}

/**
 * Wires the page's #transcript to the extension: messages in through receive(), Stop clicks and Escape
 * out through postMessage, and says `ready` so the extension sends the transcript so far.
 */
export function startTranscriptView(doc: Document, postMessage: (message: WebviewMessage) => void): TranscriptView {
  const container = doc.getElementById('transcript');
  if (!container) throw new Error('The page has no #transcript element.');
  const actions: TranscriptActions = { stop: (turnId) => postMessage({ type: 'stop', turnId }) };
  doc.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    const running = latestRunningTurn(container);
    if (running) stopTurn(running, actions);
  });
  postMessage({ type: 'ready' });
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
      applyHostMessage(container, message, actions);
    },
  };
}

export function applyHostMessage(container: HTMLElement, message: HostMessage, actions: TranscriptActions): void {
  const doc = container.ownerDocument;
  switch (message.type) {
    case 'transcript':
      container.replaceChildren(...message.turns.map((turn) => renderTurn(doc, turn, actions)));
      return;
    case 'turnAdded': {
      const element = renderTurn(doc, message.turn, actions);
      container.append(element);
      element.scrollIntoView?.({ block: 'end' });
      return;
    }
    case 'answerText':
      appendAnswerText(container, message.turnId, message.text);
      return;
    case 'answerDone':
      finishTurn(container, message.turnId, message.stopReason, message.stats);
      return;
    case 'answerError':
      showTurnError(container, message.turnId, message.message);
      return;
  }
}

/** One question with its images, the answer so far, and what follows it: Stop while running, then stats or the error. */
export function renderTurn(doc: Document, turn: Turn, actions: TranscriptActions): HTMLElement {
  const element = doc.createElement('article');
  element.className = 'turn';
  element.dataset.turnId = turn.id;

  const question = doc.createElement('div');
  question.className = 'question';
  for (const image of turn.images) {
    if (image.src) {
      const thumbnail = doc.createElement('img');
      thumbnail.className = 'thumbnail';
      thumbnail.src = image.src;
      thumbnail.alt = image.name;
      thumbnail.title = image.name;
      question.append(thumbnail);
    } else {
      const name = doc.createElement('span');
      name.className = 'image-name';
      name.textContent = image.name;
      question.append(name);
    }
  }
  const text = doc.createElement('p');
  text.className = 'question-text';
  text.textContent = turn.question;
  question.append(text);

  const answer = doc.createElement('div');
  answer.className = 'answer';
  answer.textContent = turn.answer;
  element.append(question, answer);

  if (turn.status === 'waiting' || turn.status === 'streaming') markRunning(doc, element, turn.status, actions);
  else if (turn.status === 'error') endWithError(doc, element, turn.error ?? 'The answer failed.');
  else endWithStats(doc, element, turn.stopReason ?? 'stop-token', turn.stats);
  return element;
}

/** Streams a piece of the answer in; the first piece replaces the "waiting" note. */
export function appendAnswerText(container: HTMLElement, turnId: string, text: string): void {
  const element = findTurn(container, turnId);
  if (!element) return;
  if (element.dataset.status === 'waiting') {
    element.dataset.status = 'streaming';
    element.querySelector('.waiting')?.remove();
  }
  element.querySelector('.answer')?.append(text);
}

export function finishTurn(container: HTMLElement, turnId: string, stopReason: AnswerStopReason, stats?: AnswerStatsView): void {
  const element = findTurn(container, turnId);
  if (element) endWithStats(container.ownerDocument, element, stopReason, stats);
}

export function showTurnError(container: HTMLElement, turnId: string, message: string): void {
  const element = findTurn(container, turnId);
  if (element) endWithError(container.ownerDocument, element, message);
}

/** One line under each answer: what the model saw and how fast it went. */
export function formatStats(stats: AnswerStatsView): string {
  const visual = stats.visualTokens.map((tokens) => `${tokens.atDecoder}/${tokens.original}`).join(' + ') || 'none';
  const provider = stats.providerFallback ? `${stats.provider} (${stats.providerFallback})` : stats.provider;
  return [
    `visual tokens ${visual}`,
    `prefill ${milliseconds(stats.visionMs + stats.prefillMs)} (vision ${milliseconds(stats.visionMs)})`,
    `TTFT ${milliseconds(stats.ttftMs)}`,
    `${stats.generatedTokens} tokens at ${stats.decodeTokensPerSecond.toFixed(1)} tokens/s`,
    provider,
  ].join(' · ');
}

/** The newest turn still waiting or streaming, which Escape stops. */
export function latestRunningTurn(container: HTMLElement): HTMLElement | undefined {
  const running = [...container.querySelectorAll<HTMLElement>('.turn')].filter((element) => element.dataset.status === 'waiting' || element.dataset.status === 'streaming');
  return running.at(-1);
}

function markRunning(doc: Document, element: HTMLElement, status: 'waiting' | 'streaming', actions: TranscriptActions): void {
  element.dataset.status = status;
  // Screen readers hear the whole answer once it is complete, not every streamed piece.
  element.setAttribute('aria-busy', 'true');
  const controls = doc.createElement('div');
  controls.className = 'controls';
  if (status === 'waiting') {
    const waiting = doc.createElement('span');
    waiting.className = 'waiting';
    waiting.textContent = 'Waiting for the engine…';
    controls.append(waiting);
  }
  const stop = doc.createElement('vscode-button');
  stop.className = 'stop';
  stop.setAttribute('secondary', '');
  stop.setAttribute('title', 'Stop this answer (Escape)');
  stop.textContent = 'Stop';
  stop.addEventListener('click', () => stopTurn(element, actions));
  controls.append(stop);
  element.append(controls);
}

/** Asks once: the button is disabled until the extension says how the answer ended. */
function stopTurn(element: HTMLElement, actions: TranscriptActions): void {
  const stop = element.querySelector('.stop');
  const turnId = element.dataset.turnId;
  if (!stop || !turnId || stop.hasAttribute('disabled')) return;
  stop.setAttribute('disabled', '');
  stop.textContent = 'Stopping…';
  actions.stop(turnId);
}

function endWithStats(doc: Document, element: HTMLElement, stopReason: AnswerStopReason, stats: AnswerStatsView | undefined): void {
  endRunning(element, 'done');
  const notes: string[] = [];
  if (stopReason === 'cancelled') notes.push('Stopped.');
  if (stopReason === 'max-tokens') notes.push('The answer reached the token limit.');
  if (notes.length > 0) {
    const note = doc.createElement('p');
    note.className = 'note';
    note.textContent = notes.join(' ');
    element.append(note);
  }
  if (stats) {
    const line = doc.createElement('p');
    line.className = 'stats';
    line.textContent = formatStats(stats);
    element.append(line);
  }
}

function endWithError(doc: Document, element: HTMLElement, message: string): void {
  endRunning(element, 'error');
  const error = doc.createElement('p');
  error.className = 'error';
  error.textContent = message;
  element.append(error);
}

function endRunning(element: HTMLElement, status: 'done' | 'error'): void {
  element.dataset.status = status;
  element.removeAttribute('aria-busy');
  element.querySelector('.controls')?.remove();
  element.querySelector('.answer')?.normalize();
}

function findTurn(container: HTMLElement, turnId: string): HTMLElement | undefined {
  return [...container.querySelectorAll<HTMLElement>('.turn')].find((element) => element.dataset.turnId === turnId);
}

function milliseconds(ms: number): string {
  return `${ms.toFixed(0)} ms`;
}
