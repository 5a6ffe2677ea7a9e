/**
 * Draws the conversation the extension sends: each turn's question and images, its answer as sanitized
 * markdown (streamed), the stats line, and the turn's actions — Stop while it runs; Show reduction and
 * Compare with full tokens once it is done. Every function takes the Document (or an element of it) so it
 * runs under happy-dom in tests as well as in the webview.
 */
import type { AnswerStatsView, Reply, ReplyKind, Turn } from '../src/protocol/webview';
import { CodeActions, renderMarkdown } from './markdown';
import { reductionFigure } from './overlay';

/** What the user can ask of the extension from the transcript. */
export interface TranscriptActions extends CodeActions {
  stop(turnId: string): void;
  compare(turnId: string): void;
}

const REPLY_TITLES: Record<ReplyKind, string> = { answer: 'Answer', full: 'Full tokens' };

export class TranscriptView {
  /** the text of every reply, by turn and kind: streamed pieces are appended here and the markdown redrawn */
  private readonly texts = new Map<string, string>();

  constructor(
    private readonly container: HTMLElement,
    private readonly actions: TranscriptActions,
  ) {}

  showTurns(turns: Turn[]): void {
    this.texts.clear();
    this.container.replaceChildren(...turns.map((turn) => this.renderTurn(turn)));
  }

  addTurn(turn: Turn): void {
    const element = this.renderTurn(turn);
    this.container.append(element);
    element.scrollIntoView?.({ block: 'end' });
  }

  /** Redraws a turn whose state changed (an answer ended, a comparison started or ended, a speedup arrived). */
  updateTurn(turn: Turn): void {
    const old = this.findTurn(turn.id);
    if (!old) {
      this.addTurn(turn);
      return;
    }
    const following = this.isScrolledToEnd();
    old.replaceWith(this.renderTurn(turn));
    if (following) this.container.scrollTop = this.container.scrollHeight;
  }

  appendText(turnId: string, kind: ReplyKind, text: string): void {
    const section = this.findTurn(turnId)?.querySelector<HTMLElement>(`.reply[data-reply="${kind}"]`);
    if (!section) return;
    const key = `${turnId}/${kind}`;
    const full = (this.texts.get(key) ?? '') + text;
    this.texts.set(key, full);
    if (section.dataset.status === 'waiting') {
      section.dataset.status = 'streaming';
      section.querySelector('.waiting')?.remove();
    }
    const following = this.isScrolledToEnd();
    renderMarkdown(section.querySelector<HTMLElement>('.reply-body')!, full, this.actions);
    if (following) this.container.scrollTop = this.container.scrollHeight;
  }

  /**
   * Whether the reader is at the newest text (then streamed text keeps it in view; otherwise it stays where they
   * scrolled).
   */
  private isScrolledToEnd(): boolean {
    return this.container.scrollHeight - this.container.scrollTop - this.container.clientHeight < 24;
  }

  /** The newest turn still answering (either reply), which Escape stops. */
  runningTurnId(): string | undefined {
    const running = [...this.container.querySelectorAll<HTMLElement>('.reply')].filter(
      (r) => r.dataset.status === 'waiting' || r.dataset.status === 'streaming',
    );
    return running.at(-1)?.closest<HTMLElement>('.turn')?.dataset.turnId;
  }

  /** Stops the turn once: its Stop buttons are disabled until the extension says how it ended. */
  stop(turnId: string): void {
    const stops = [...(this.findTurn(turnId)?.querySelectorAll('.stop') ?? [])];
    if (stops.length === 0 || stops.every((stop) => stop.hasAttribute('disabled'))) return;
    for (const stop of stops) {
      stop.setAttribute('disabled', '');
      stop.textContent = 'Stopping…';
    }
    this.actions.stop(turnId);
  }

  private renderTurn(turn: Turn): HTMLElement {
    const doc = this.container.ownerDocument;
    const element = doc.createElement('article');
    element.className = 'turn';
    element.dataset.turnId = turn.id;
    const replies = doc.createElement('div');
    replies.className = turn.full ? 'replies compared' : 'replies';
    replies.append(this.renderReply(turn, 'answer', turn.answer));
    if (turn.full) replies.append(this.renderReply(turn, 'full', turn.full));
    element.append(renderQuestion(doc, turn), replies);
    const answering = [turn.answer, turn.full].some(
      (reply) => reply && (reply.status === 'waiting' || reply.status === 'streaming'),
    );
    if (answering) element.setAttribute('aria-busy', 'true');
    else if (turn.answer.status === 'done') element.append(...this.turnActions(turn));
    return element;
  }

  private renderReply(turn: Turn, kind: ReplyKind, reply: Reply): HTMLElement {
    const doc = this.container.ownerDocument;
    const section = doc.createElement('section');
    section.className = 'reply';
    section.dataset.reply = kind;
    section.dataset.status = reply.status;
    if (turn.full) {
      const title = doc.createElement('h3');
      title.textContent =
        kind === 'full'
          ? REPLY_TITLES.full
          : `${REPLY_TITLES.answer}${reply.stats?.reduction ? ` (${reply.stats.reduction.method}, ${reply.stats.reduction.budget})` : ''}`;
      section.append(title);
    }
    const body = doc.createElement('div');
    body.className = 'reply-body';
    this.texts.set(`${turn.id}/${kind}`, reply.text);
    renderMarkdown(body, reply.text, this.actions);
    if (reply.status === 'waiting' || reply.status === 'streaming') {
      // Above the text, so the streamed text does not push Stop away while it grows.
      const controls = doc.createElement('div');
      controls.className = 'controls';
      controls.append(button(doc, 'Stop', 'stop', 'Stop this answer (Escape)', () => this.stop(turn.id)));
      if (reply.status === 'waiting') {
        const waiting = doc.createElement('span');
        waiting.className = 'waiting';
        waiting.textContent = 'Waiting for the engine…';
        controls.append(waiting);
      }
      section.append(controls, body);
      return section;
    }
    section.append(body);
    if (reply.status === 'error') {
      section.append(paragraph(doc, 'error', reply.error ?? 'The answer failed.'));
      return section;
    }
    if (reply.stopReason === 'cancelled') section.append(paragraph(doc, 'note', 'Stopped.'));
    if (reply.stopReason === 'max-tokens')
      section.append(paragraph(doc, 'note', 'The answer reached the token limit (ficoco.maxNewTokens).'));
    if (reply.stats) section.append(paragraph(doc, 'stats', formatStats(reply.stats)));
    return section;
  }

  /** Show reduction (when the answer was reduced and the images have previews) and Compare with full tokens. */
  private turnActions(turn: Turn): HTMLElement[] {
    const doc = this.container.ownerDocument;
    const bar = doc.createElement('div');
    bar.className = 'turn-actions';
    const reductions = turn.answer.stats?.imageReductions ?? [];
    const figures = doc.createElement('div');
    figures.className = 'reduction-figures';
    figures.hidden = true;
    const shown = turn.images.flatMap((image, i) =>
      image.src && reductions[i] ? [reductionFigure(doc, image, reductions[i])] : [],
    );
    if (shown.length > 0) {
      figures.append(...shown);
      const toggle = button(
        doc,
        'Show reduction',
        'show-reduction',
        'Draw the image with the patches the model kept, merged and dropped',
        () => {
          figures.hidden = !figures.hidden;
          toggle.textContent = figures.hidden ? 'Show reduction' : 'Hide reduction';
          toggle.setAttribute('aria-expanded', String(!figures.hidden));
        },
      );
      toggle.setAttribute('aria-expanded', 'false');
      bar.append(toggle);
    }
    if (turn.answer.stats?.reduction && !turn.full) {
      bar.append(
        button(
          doc,
          'Compare with full tokens',
          'compare',
          'Answer the same question with every visual token, side by side',
          () => this.actions.compare(turn.id),
        ),
      );
    }
    return bar.childElementCount > 0 ? [bar, figures] : [];
  }

  private findTurn(turnId: string): HTMLElement | undefined {
    return [...this.container.querySelectorAll<HTMLElement>('.turn')].find(
      (element) => element.dataset.turnId === turnId,
    );
  }
}

function renderQuestion(doc: Document, turn: Turn): HTMLElement {
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
      question.append(paragraph(doc, 'image-name', image.name, 'span'));
    }
  }
  question.append(paragraph(doc, 'question-text', turn.question));
  return question;
}

/** One line under each answer: what the model saw and how fast it went. */
export function formatStats(stats: AnswerStatsView): string {
  const visual = stats.visualTokens.map((tokens) => `${tokens.atDecoder}/${tokens.original}`).join(' + ') || 'none';
  const provider = stats.providerFallback ? `${stats.provider} (${stats.providerFallback})` : stats.provider;
  const parts = [
    stats.reduction ? `${stats.reduction.method} ${stats.reduction.budget}` : 'full tokens',
    `visual tokens ${visual}`,
    `prefill ${milliseconds(stats.visionMs + stats.prefillMs)} (vision ${milliseconds(stats.visionMs)})`,
    `TTFT ${milliseconds(stats.ttftMs)}`,
    `${stats.generatedTokens} tokens at ${stats.decodeTokensPerSecond.toFixed(1)} tokens/s`,
    provider,
  ];
  if (stats.speedup !== undefined) parts.push(`${stats.speedup.toFixed(1)}× faster prefill (measured)`);
  if (stats.historyTrimmed) parts.push(historyTrimmedNote(stats.historyTrimmed));
  if (stats.flopsRatio !== undefined) parts.push(`${(100 * stats.flopsRatio).toFixed(0)} % of the FLOPs (analytic)`);
  return parts.join(' · ');
}

/** Says that the oldest messages were left out, and why. */
function historyTrimmedNote({
  droppedMessages,
  contextTokens,
}: {
  droppedMessages: number;
  contextTokens: number;
}): string {
  return (
    `${droppedMessages} earlier message${droppedMessages === 1 ? '' : 's'} left out to fit the model's ` +
    `${contextTokens}-token context`
  );
}

function button(doc: Document, label: string, className: string, title: string, onClick: () => void): HTMLElement {
  const element = doc.createElement('vscode-button');
  element.className = className;
  element.setAttribute('secondary', '');
  element.setAttribute('title', title);
  element.textContent = label;
  element.addEventListener('click', onClick);
  return element;
}

function paragraph(doc: Document, className: string, text: string, tag: 'p' | 'span' = 'p'): HTMLElement {
  const element = doc.createElement(tag);
  element.className = className;
  element.textContent = text;
  return element;
}

function milliseconds(ms: number): string {
  return `${ms.toFixed(0)} ms`;
}
