/**
 * The page's controls, all @vscode-elements components (registered in main.ts): buttons, and the collapsible that
 * holds an answer's details. Built in one place so that every control behaves the same for the keyboard and for
 * screen readers.
 */

export interface ButtonOptions {
  label: string;
  /** names what the button does; tests and the e2e suite find it by this class */
  className: string;
  /** the tooltip */
  title: string;
  onClick: () => void;
  /** the accessible name, where the label alone does not say it ("×") */
  ariaLabel?: string;
  /** names the control within its turn, so that focus comes back to it when the turn is redrawn */
  control?: string;
}

/** A secondary vscode-button: Tab reaches it, Enter and Space press it. */
export function button(doc: Document, options: ButtonOptions): HTMLElement {
  const element = doc.createElement('vscode-button');
  element.className = options.className;
  element.setAttribute('secondary', '');
  element.setAttribute('title', options.title);
  if (options.ariaLabel) element.setAttribute('aria-label', options.ariaLabel);
  if (options.control) element.dataset.control = options.control;
  element.textContent = options.label;
  element.addEventListener('click', options.onClick);
  return element;
}

export interface CollapsibleOptions {
  heading: string;
  className: string;
  control: string;
  open: boolean;
  onToggle(open: boolean): void;
  content: HTMLElement;
}

/**
 * A vscode-collapsible. Its header (inside the component) toggles on click and Enter only and has no role; here Space
 * toggles it too, and the header is a button that says whether it is expanded.
 */
export function collapsible(doc: Document, options: CollapsibleOptions): HTMLElement {
  const element = doc.createElement('vscode-collapsible');
  element.className = options.className;
  element.dataset.control = options.control;
  element.setAttribute('heading', options.heading);
  element.toggleAttribute('open', options.open);
  element.append(options.content);
  element.addEventListener('keydown', (event) => {
    // A key pressed on the header reaches the host retargeted to it; keys in the content keep their own target.
    if (event.key !== ' ' || event.target !== element) return;
    event.preventDefault();
    element.toggleAttribute('open');
  });
  // The component reflects every toggle (click, Enter, Space) to the open attribute.
  let open = options.open;
  new doc.defaultView!.MutationObserver(() => {
    if (element.hasAttribute('open') === open) return;
    open = !open;
    describeHeader(element);
    options.onToggle(open);
    // What opens may reach below the fold.
    if (open) element.scrollIntoView?.({ block: 'nearest' });
  }).observe(element, { attributes: true, attributeFilter: ['open'] });
  void rendered(element).then(() => describeHeader(element));
  return element;
}

/** Moves focus to a control without scrolling; a collapsible takes it on its header. */
export function focusControl(element: HTMLElement): void {
  if (element.localName !== 'vscode-collapsible') {
    element.focus({ preventScroll: true });
    return;
  }
  void rendered(element).then(() => collapsibleHeader(element)?.focus({ preventScroll: true }));
}

function describeHeader(element: HTMLElement): void {
  const header = collapsibleHeader(element);
  header?.setAttribute('role', 'button');
  header?.setAttribute('aria-expanded', String(element.hasAttribute('open')));
}

function collapsibleHeader(element: HTMLElement): HTMLElement | null | undefined {
  return element.shadowRoot?.querySelector<HTMLElement>('.collapsible-header');
}

/** Resolves once a component has drawn itself (Lit's updateComplete); at once where it is not registered. */
function rendered(element: HTMLElement): Promise<unknown> {
  return (element as HTMLElement & { updateComplete?: Promise<boolean> }).updateComplete ?? Promise.resolve();
}
