/**
 * WCAG contrast of every piece of text on the chat page, as the browser drew it: the text's computed colour against
 * its effective background (the backgrounds of its ancestors, through the components' shadow trees, blended until an
 * opaque one). The page only collects colours; the blending and the ratios are computed here.
 */
import type { FrameLocator } from 'playwright-core';

/** One run of text: its colour, and the background colours under it from the nearest to the page's. */
export interface TextColours {
  text: string;
  /** the element that draws it, e.g. "p.error" */
  where: string;
  colour: string;
  backgrounds: string[];
  /** the product of the opacities of the element and its ancestors */
  opacity: number;
}

export interface TextContrast extends TextColours {
  ratio: number;
}

/**
 * Every visible text on the page (placeholders included), with its contrast ratio; disabled controls are exempt.
 * `behind` is the colour the page shows where it has no background of its own (the side bar's).
 */
export async function textContrasts(chat: FrameLocator, behind: string): Promise<TextContrast[]> {
  return (await collectTextColours(chat)).map((sample) => ({ ...sample, ratio: contrastOf(sample, behind) }));
}

function collectTextColours(chat: FrameLocator): Promise<TextColours[]> {
  // Runs in the page: no named inner functions, which the TypeScript loader would wrap in a helper the page lacks.
  return chat.locator('body').evaluate((body) => {
    const doc = body.ownerDocument;
    const view = doc.defaultView!;
    const starts: { text: string; element: Element; colour?: string }[] = [];
    const roots: (Document | ShadowRoot)[] = [doc];
    while (roots.length > 0) {
      const walker = doc.createTreeWalker(roots.pop()!, view.NodeFilter.SHOW_ELEMENT | view.NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node instanceof view.Element) {
          if (node.shadowRoot) roots.push(node.shadowRoot);
          continue;
        }
        const text = node.textContent?.trim() ?? '';
        const range = doc.createRange();
        range.selectNodeContents(node);
        if (text === '' || range.getClientRects().length === 0) continue;
        // Text slotted into a component is drawn with the style of the slot it lands in.
        starts.push({ text, element: (node as Text).assignedSlot ?? node.parentElement! });
      }
    }
    for (const field of body.querySelectorAll('textarea')) {
      if (field.value === '' && field.placeholder !== '')
        starts.push({
          text: field.placeholder,
          element: field,
          colour: view.getComputedStyle(field, '::placeholder').color,
        });
    }
    const samples = [];
    for (const start of starts) {
      const backgrounds: string[] = [];
      let opacity = 1;
      let disabled = false;
      for (
        let element: Element | null = start.element;
        element;
        element = element.assignedSlot ?? element.parentElement ?? (element.getRootNode() as ShadowRoot).host ?? null
      ) {
        const style = view.getComputedStyle(element);
        disabled ||= element.hasAttribute('disabled');
        opacity *= Number(style.opacity);
        if (style.backgroundColor !== 'rgba(0, 0, 0, 0)') backgrounds.push(style.backgroundColor);
      }
      if (disabled) continue;
      const element = start.element;
      const where = `${element.localName}${element.className ? `.${String(element.className).split(' ').join('.')}` : ''}`;
      samples.push({
        text: start.text.slice(0, 60),
        where,
        colour: start.colour ?? view.getComputedStyle(element).color,
        backgrounds,
        opacity,
      });
    }
    return samples;
  });
}

interface Rgba {
  r: number;
  g: number;
  b: number;
  a: number;
}

/** The contrast ratio of a sample: its colour (faded by its opacity) over its backgrounds, blended from `behind` up. */
function contrastOf(sample: TextColours, behind: string): number {
  const background = sample.backgrounds
    .map(parseColour)
    .reduceRight((below, layer) => over(layer, below), parseColour(behind));
  const colour = parseColour(sample.colour);
  const text = over({ ...colour, a: colour.a * sample.opacity }, background);
  const [lighter, darker] = [luminance(text), luminance(background)].sort((x, y) => y - x);
  return (lighter! + 0.05) / (darker! + 0.05);
}

/** rgb(), rgba() and color(srgb …) (what color-mix() computes to), channels 0–255. */
function parseColour(css: string): Rgba {
  const numbers = (css.match(/-?\d*\.?\d+(e-?\d+)?/g) ?? []).map(Number);
  const scale = css.startsWith('color(srgb') ? 255 : 1;
  const [r = 0, g = 0, b = 0, a = 1] = numbers;
  return { r: r * scale, g: g * scale, b: b * scale, a };
}

/** Source-over compositing of `top` on an opaque `below`. */
function over(top: Rgba, below: Rgba): Rgba {
  const mix = (upper: number, lower: number) => upper * top.a + lower * (1 - top.a);
  return { r: mix(top.r, below.r), g: mix(top.g, below.g), b: mix(top.b, below.b), a: 1 };
}

/** WCAG 2 relative luminance. */
function luminance({ r, g, b }: Rgba): number {
  const linear = (channel: number) => {
    const c = channel / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
}
