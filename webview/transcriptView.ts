/**
 * Draws the conversation the extension sends: each turn's question and images, its answer as sanitized
 * markdown (streamed), the stats under it, and the turn's actions — Stop while it runs; Show reduction and
 * Compare with full tokens once it is done. Every function takes the Document (or an element of it) so it
 * runs under happy-dom in tests as well as in the webview.
 */
import type { Reply, ReplyKind, Turn } from '../src/protocol/webview';
import { button, focusControl } from './controls';
import { CodeActions, renderMarkdown } from './markdown';
import { reductionFigure, reductionLegend, thumbnailFigure } from './overlay';
import { answerStats } from './stats';

/** What the user can ask of the extension from the transcript. */
export interface TranscriptActions extends CodeActions {
  stop(turnId: string): void;
  compare(turnId: string): void;
}

const REPLY_TITLES: Record<ReplyKind, string> = { answer: 'Answer', full: 'Full tokens' };

export class TranscriptView {
  /** the text of every reply, by turn and kind: streamed pieces are appended here and the markdown redrawn */
  private readonly texts = new Map<string, string>();
  /** reply bodies whose streamed text is not drawn yet: drawn once a frame, as drawing per piece is quadratic */
  private readonly undrawn = new Map<string, HTMLElement>();
  private frameRequested = false;
  /** what the reader opened (an answer's details, a turn's reduction overlay), kept when a turn is redrawn */
  private readonly opened = new Set<string>();
  /** whether new content keeps the end in view: until the reader scrolls up, and again once they are back at the end */
  private following = true;
  private lastScrollTop = 0;

  constructor(
    private readonly container: HTMLElement,
    private readonly actions: TranscriptActions,
  ) {
    container.addEventListener('scroll', () => this.readerScrolled());
    // A thumbnail that finishes loading makes its turn taller after the end was brought into view.
    container.addEventListener('load', () => this.keepEndInView(), true);
  }

  showTurns(turns: Turn[]): void {
    this.texts.clear();
    this.undrawn.clear();
    this.opened.clear();
    this.container.replaceChildren(...turns.map((turn) => this.renderTurn(turn)));
    this.following = true;
    this.keepEndInView();
  }

  /** A new question: the reader just asked it, so the view goes to its end. */
  addTurn(turn: Turn): void {
    this.container.append(this.renderTurn(turn));
    this.following = true;
    this.keepEndInView();
  }

  /**
   * Redraws a turn whose state changed (an answer ended, a comparison started or ended, a speedup arrived), with what
   * the reader had opened and focused in it.
   */
  updateTurn(turn: Turn): void {
    const old = this.findTurn(turn.id);
    if (!old) {
      this.addTurn(turn);
      return;
    }
    const focused = (old.ownerDocument.activeElement as HTMLElement | null)?.closest<HTMLElement>('[data-control]');
    const fresh = this.renderTurn(turn);
    old.replaceWith(fresh);
    if (focused && old.contains(focused)) {
      // The same control, or (when it is gone, as Compare is once pressed) the turn's first one.
      const control =
        fresh.querySelector<HTMLElement>(`[data-control="${focused.dataset.control}"]`) ??
        fresh.querySelector<HTMLElement>('[data-control]');
      if (control) focusControl(control);
    }
    this.keepEndInView();
  }

  appendText(turnId: string, kind: ReplyKind, text: string): void {
    const section = this.findTurn(turnId)?.querySelector<HTMLElement>(`.reply[data-reply="${kind}"]`);
    if (!section) return;
    const key = `${turnId}/${kind}`;
    this.texts.set(key, (this.texts.get(key) ?? '') + text);
    if (section.dataset.status === 'waiting') {
      section.dataset.status = 'streaming';
      section.querySelector('.waiting')?.remove();
    }
    this.undrawn.set(key, section.querySelector<HTMLElement>('.reply-body')!);
    if (this.frameRequested) return;
    this.frameRequested = true;
    onNextFrame(this.container.ownerDocument.defaultView, () => this.drawStreamed());
  }

  /** Draws the latest text of each reply that streamed since the last frame. */
  private drawStreamed(): void {
    this.frameRequested = false;
    // Each body was last drawn with its text's beginning: appendText only adds to the text.
    for (const [key, body] of this.undrawn)
      renderMarkdown(body, this.texts.get(key) ?? '', this.actions, { appended: true });
    this.undrawn.clear();
    this.keepEndInView();
  }

  /** A waiting reply says what the engine is doing (reading its image, its prompt) instead of "Waiting…". */
  showProgress(turnId: string, kind: ReplyKind, label: string): void {
    const waiting = this.findTurn(turnId)?.querySelector(
      `.reply[data-reply="${kind}"][data-status="waiting"] .waiting`,
    );
    if (waiting) waiting.textContent = `${label}…`;
  }

  private keepEndInView(): void {
    if (!this.following) return;
    this.container.scrollTop = this.container.scrollHeight;
    this.lastScrollTop = this.container.scrollTop;
  }

  /** Scrolling up stops following; reaching the end again resumes it. Our own scrolling lands at the end. */
  private readerScrolled(): void {
    const top = this.container.scrollTop;
    this.following = this.isScrolledToEnd() || (this.following && top >= this.lastScrollTop);
    this.lastScrollTop = top;
  }

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

  /**
   * Stops the turn once: its Stop buttons are disabled at once, and stay so in every redraw of the turn the extension
   * sends, which says its replies are stopping until they end.
   */
  stop(turnId: string): void {
    const stops = [...(this.findTurn(turnId)?.querySelectorAll('.stop') ?? [])];
    if (stops.length === 0 || stops.every((stop) => stop.hasAttribute('disabled'))) return;
    for (const stop of stops) showStopping(stop);
    this.actions.stop(turnId);
  }

  private renderTurn(turn: Turn): HTMLElement {
    const doc = this.container.ownerDocument;
    const element = doc.createElement('article');
    element.className = 'turn';
    element.dataset.turnId = turn.id;
    const answering = [turn.answer, turn.full].some(
      (reply) => reply && (reply.status === 'waiting' || reply.status === 'streaming'),
    );
    const replies = doc.createElement('div');
    replies.className = turn.full ? 'replies compared' : 'replies';
    replies.append(this.renderReply(turn, 'answer', turn.answer));
    if (turn.full) replies.append(this.renderReply(turn, 'full', turn.full));
    element.append(renderQuestion(doc, turn), replies);
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
    const key = `${turn.id}/${kind}`;
    this.texts.set(key, reply.text);
    // Drawn here with the whole text (a finished answer's, too): a frame still due has nothing left to draw.
    this.undrawn.delete(key);
    renderMarkdown(body, reply.text, this.actions);
    if (reply.status === 'waiting' || reply.status === 'streaming') {
      // Above the text, so the streamed text does not push Stop away while it grows.
      const controls = doc.createElement('div');
      controls.className = 'controls';
      const stop = button(doc, {
        label: 'Stop',
        className: 'stop',
        title: 'Stop this answer (Escape)',
        control: `${kind}-stop`,
        onClick: () => this.stop(turn.id),
      });
      if (reply.stopping) showStopping(stop);
      controls.append(stop);
      if (reply.status === 'waiting')
        controls.append(paragraph(doc, 'waiting', `${reply.progress ?? 'Waiting for the engine'}…`, 'span'));
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
    if (reply.stats) {
      const details = `${turn.id}/${kind}/details`;
      section.append(
        answerStats(doc, reply.stats, {
          control: `${kind}-details`,
          detailsOpen: this.opened.has(details),
          onDetailsToggle: (open) => this.remember(details, open),
        }),
      );
    }
    return section;
  }

  /** Show reduction (when the answer was reduced and the images have previews) and Compare with full tokens. */
  private turnActions(turn: Turn): HTMLElement[] {
    const doc = this.container.ownerDocument;
    const bar = doc.createElement('div');
    bar.className = 'turn-actions';
    const parts = [bar];
    const reductions = turn.answer.stats?.imageReductions ?? [];
    const drawn = turn.images.flatMap((image, i) => {
      const reduction = reductions[i];
      return image.src && reduction ? [{ image, reduction }] : [];
    });
    if (drawn.length > 0) {
      const overlay = doc.createElement('div');
      overlay.className = 'reduction-overlay';
      // Drawn when first opened: a tiled screenshot's grid is thousands of cells, and a long chat has many turns.
      const fill = () => {
        const figureRow = doc.createElement('div');
        figureRow.className = 'reduction-figures';
        figureRow.append(
          ...drawn.flatMap(({ image, reduction }) => [
            reductionFigure(doc, image, reduction),
            ...(reduction.thumbnail ? [thumbnailFigure(doc, image, reduction.thumbnail)] : []),
          ]),
        );
        overlay.append(figureRow, reductionLegend(doc));
      };
      bar.append(this.overlayToggle(turn.id, overlay, fill));
      parts.push(overlay);
    }
    // A turn restored without all its images cannot be asked again.
    if (turn.answer.stats?.reduction && !turn.full && turn.images.every((image) => !image.notKept)) {
      bar.append(
        button(doc, {
          label: 'Compare with full tokens',
          className: 'compare',
          title: 'Answer the same question with every visual token, side by side',
          control: 'compare',
          onClick: () => this.actions.compare(turn.id),
        }),
      );
    }
    return bar.childElementCount > 0 ? parts : [];
  }

  /**
   * Show reduction / Hide reduction: opens and closes the overlay, which stays open when the turn is redrawn; `fill`
   * draws its contents the first time it opens.
   */
  private overlayToggle(turnId: string, overlay: HTMLElement, fill: () => void): HTMLElement {
    const key = `${turnId}/reduction`;
    const toggle = button(this.container.ownerDocument, {
      label: 'Show reduction',
      className: 'show-reduction',
      title: 'Draw the image with the patches the model kept, merged and dropped',
      control: 'show-reduction',
      onClick: () => {
        this.remember(key, !this.opened.has(key));
        draw();
        // The overlay opens below the actions, where it may be out of view.
        if (!overlay.hidden) overlay.scrollIntoView?.({ block: 'nearest' });
      },
    });
    const draw = () => {
      const open = this.opened.has(key);
      if (open && overlay.childElementCount === 0) fill();
      overlay.hidden = !open;
      toggle.textContent = open ? 'Hide reduction' : 'Show reduction';
      toggle.setAttribute('aria-expanded', String(open));
    };
    draw();
    return toggle;
  }

  private remember(key: string, open: boolean): void {
    if (open) this.opened.add(key);
    else this.opened.delete(key);
  }

  private findTurn(turnId: string): HTMLElement | undefined {
    return [...this.container.querySelectorAll<HTMLElement>('.turn')].find(
      (element) => element.dataset.turnId === turnId,
    );
  }
}

/** Runs `draw` before the next paint, or on a timer where the window has no animation frames. */
function onNextFrame(window: Window | null, draw: () => void): void {
  if (typeof window?.requestAnimationFrame === 'function') window.requestAnimationFrame(draw);
  else setTimeout(draw, 16);
}

/** A pressed Stop: disabled until the extension says how the turn ended. */
function showStopping(stop: Element): void {
  stop.setAttribute('disabled', '');
  stop.textContent = 'Stopping…';
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
    } else if (image.notKept) {
      const name = paragraph(doc, 'image-name not-kept', `${image.name} (image not kept)`, 'span');
      name.title = 'The saved chat keeps the newest images only; this one was left out when the window reloaded.';
      question.append(name);
    } else {
      question.append(paragraph(doc, 'image-name', image.name, 'span'));
    }
  }
  question.append(paragraph(doc, 'question-text', turn.question));
  return question;
}

function paragraph(doc: Document, className: string, text: string, tag: 'p' | 'span' = 'p'): HTMLElement {
  const element = doc.createElement(tag);
  element.className = className;
  element.textContent = text;
  return element;
}
