/**
 * The chat in a narrow side bar, from the keyboard, in every default theme: a reduced answer's compact stats line and
 * its details, the overlay's legend, nothing cut off at 300 px, the newest turn scrolled into view, text contrast of
 * at least 4.5:1 (WCAG AA) in light, dark and high contrast themes, and the README's screenshots at 300 and 500 px,
 * light and dark (test-results/chat-<width>-<theme>.png, copied to media/screenshots/). Run by `npm run test:e2e`.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FrameLocator } from 'playwright-core';
import { readEvalSet } from '../../src/cli/evalSet';
import { TextColours, textContrasts } from './contrast';
import { missingPrerequisite, ROOT, Workbench } from './workbench';

/** An item the built-in model answers right with 16 tokens under ficoco-v (see chat.e2e.ts). */
const item = readEvalSet(path.join(ROOT, 'bench', 'eval-set', 'data.jsonl')).find(
  (candidate) => path.basename(candidate.image) === '1000000025.png' && candidate.type === 'arrow',
)!;
const MINUTE = 60_000;
const LIGHT = 'Default Light Modern';
const DARK = 'Default Dark Modern';
/** VS Code's default themes: the light and dark ones of today and before, and both high contrast ones. */
const THEMES = [LIGHT, DARK, 'Default Light+', 'Default Dark+', 'Default High Contrast', 'Default High Contrast Light'];
/** WCAG 2 AA for text. */
const AA_CONTRAST = 4.5;
/** The texts the contrast test must have found, by where they are drawn. */
const CHECKED: Record<string, (sample: TextColours, answer: string) => boolean> = {
  'the answer': (sample, answer) => sample.text === answer,
  'the stats line': (sample) => sample.where === 'p.stats-line',
  "the details' header": (sample) => sample.where === 'h3.title' && sample.text === 'Details',
  'the details': (sample) => sample.where === 'dd',
  "the overlay's legend": (sample) => sample.where === 'li',
  'a note': (sample) => sample.where === 'p.note',
  'an error': (sample) => sample.where === 'p.error',
  "the question box's placeholder": (sample) => sample.where === 'textarea',
};

describe('the chat in a narrow side bar', { skip: missingPrerequisite() }, () => {
  let workbench: Workbench;
  let settings: Record<string, unknown> = {
    'ficoco.reduction.method': 'ficoco-v',
    'ficoco.reduction.budget': '16',
    'workbench.colorTheme': LIGHT,
  };
  const changeSettings = async (changes: Record<string, unknown>) => {
    settings = { ...settings, ...changes };
    await workbench.writeSettings(settings);
  };
  const useTheme = async (theme: string) => {
    await changeSettings({ 'workbench.colorTheme': theme });
    await workbench.waitForChatTheme(theme);
  };

  before(async () => {
    workbench = await Workbench.start(settings, 2);
    await workbench.openChat();
    await workbench.setSideBarWidth(300);
  });

  after(async () => {
    await workbench?.close();
  });

  const turns = () => workbench.chat.locator('.turn');
  const firstAnswer = () => turns().first().locator('.reply[data-reply="answer"]');
  const lastAnswer = () => turns().last().locator('.reply[data-reply="answer"]');
  const ended = (reply: ReturnType<typeof lastAnswer>) =>
    reply.and(workbench.chat.locator('[data-status="done"], [data-status="error"]')).waitFor({ timeout: 2 * MINUTE });
  const pasteImage = (name: string, bytes: Buffer) => workbench.paste({ name, type: 'image/png', bytes });
  /** Sets the window's height so that the whole conversation shows without scrolling, for a screenshot of all of it. */
  const fitHeightToChat = async () => {
    const transcript = workbench.chat.locator('#transcript');
    const overflow = await transcript.evaluate((element) => element.scrollHeight - element.clientHeight);
    const { width, height } = workbench.page.viewportSize()!;
    await workbench.page.setViewportSize({ width, height: height + overflow });
    await transcript.evaluate(async (element) => {
      while (element.scrollHeight > element.clientHeight)
        await new Promise((resolve) => requestAnimationFrame(resolve));
    });
  };

  test("a reduced answer: one compact stats line, the speedup in the extension's words, details on expand", async () => {
    await pasteImage(path.basename(item.image), fs.readFileSync(item.image));
    await workbench.ask(item.question);
    await ended(lastAnswer());
    const line = firstAnswer().locator('.stats-line');
    assert.match(await line.innerText(), /^ficoco-v 16 · 16\/144 tokens · .+ · TTFT \d+ ms$/);
    await line.locator('.speedup:not(.measuring)').waitFor({ timeout: 2 * MINUTE });
    const speedup = await line.locator('.speedup').innerText();
    const faster = /^(\d+(?:\.\d+)?)× faster$/.exec(speedup);
    assert.ok(!faster || Number(faster[1]) >= 1, `"${speedup}" calls a ratio below 1 faster`);
    assert.doesNotMatch(await line.innerText(), /webgpu|fallback/i, 'a provider fallback is not on the line');
    const details = firstAnswer().getByRole('button', { name: 'Details' });
    assert.equal(await details.getAttribute('aria-expanded'), 'false');
    assert.equal(await firstAnswer().locator('.stats-details-list').isVisible(), false);
  });

  test('every control is reached with Tab, shows that it has focus, and works with Enter or Space', async () => {
    await pasteImage('waiting.png', fs.readFileSync(item.image));
    await workbench.chat.locator('.pending-image').waitFor();
    const question = workbench.chat.locator('#question');
    await question.focus();
    const backwards = await tabWalk(workbench, 'Shift+Tab', 4);
    assert.deepEqual(
      backwards.map((stop) => stop.control),
      ['remove-image', 'compare', 'show-reduction', 'answer-details'],
    );
    await question.focus();
    const forwards = await tabWalk(workbench, 'Tab', 3);
    assert.deepEqual(
      forwards.map((stop) => stop.control),
      ['attach', 'new-chat', 'send'],
    );
    for (const stop of [...backwards, ...forwards]) assert.ok(stop.focusRing, `${stop.control} shows no focus ring`);

    const details = firstAnswer().getByRole('button', { name: 'Details' });
    await details.press('Space');
    assert.equal(await details.getAttribute('aria-expanded'), 'true');
    await details.press('Enter');
    assert.equal(await details.getAttribute('aria-expanded'), 'false');
    await details.press('Space');
    await firstAnswer().locator('.stats-details-list').waitFor();

    await turns().first().locator('.show-reduction').press('Enter');
    await turns().first().locator('.reduction-legend').waitFor();

    await workbench.chat.locator('.remove-image').press('Enter');
    await workbench.chat.locator('.pending-image').waitFor({ state: 'detached' });
    assert.equal(await focusedControl(workbench.chat).then((stop) => stop.control), 'question');

    await workbench.chat.locator('#attach').press('Enter');
    const dialog = workbench.page.locator('.quick-input-widget');
    await dialog.waitFor({ timeout: MINUTE });
    await workbench.page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
  });

  test('the overlay says what each drawing means', async () => {
    const legend = turns().first().locator('.reduction-legend');
    assert.equal(await legend.getAttribute('aria-label'), 'What the drawing shows');
    assert.deepEqual(await legend.locator('li').allInnerTexts(), [
      'kept as its own token',
      'merged into another token',
      'dropped',
    ]);
  });

  for (const width of [300, 500]) {
    test(`at ${width} px nothing is cut off; screenshots in light and dark`, async () => {
      await workbench.setSideBarWidth(width);
      assert.deepEqual(await cutOff(workbench.chat), []);
      const viewport = workbench.page.viewportSize()!;
      await fitHeightToChat();
      for (const [name, theme] of [
        ['light', LIGHT],
        ['dark', DARK],
      ] as const) {
        await useTheme(theme);
        await workbench.screenshotSideBar(`chat-${width}-${name}`);
      }
      await useTheme(LIGHT);
      await workbench.page.setViewportSize(viewport);
    });
  }

  test('a note and an error: each newest turn is scrolled into view whole', async () => {
    await workbench.setSideBarWidth(300);
    // One new token at most: the answer ends at the token limit, which a note says.
    await changeSettings({ 'ficoco.maxNewTokens': 1 });
    await pasteImage(path.basename(item.image), fs.readFileSync(item.image));
    await workbench.chat.locator('#question').fill(item.question);
    await workbench.chat.locator('#send').press('Space');
    await ended(lastAnswer());
    assert.match(await lastAnswer().locator('.note').innerText(), /token limit/);
    await changeSettings({ 'ficoco.maxNewTokens': 64 });
    // A PNG's header with its pixel data cut off: the engine fails to decode it, and the chat shows the error.
    await pasteImage('cut-off.png', fs.readFileSync(item.image).subarray(0, 200));
    await workbench.ask('what is in this screenshot?');
    await ended(lastAnswer());
    await lastAnswer().locator('.error').waitFor();
    // The view settles at the end within a few frames of the thumbnail loading.
    const distanceFromEnd = await workbench.chat.locator('#transcript').evaluate(async (transcript) => {
      for (
        let frame = 0;
        frame < 60 && transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight >= 1;
        frame++
      )
        await new Promise((resolve) => requestAnimationFrame(resolve));
      return transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight;
    });
    assert.ok(distanceFromEnd < 1, `the view stopped ${distanceFromEnd} px short of the end`);
    const [view, error] = await Promise.all([
      workbench.chat.locator('#transcript').boundingBox(),
      lastAnswer().locator('.error').boundingBox(),
    ]);
    assert.ok(view && error && error.y >= view.y && error.y + error.height <= view.y + view.height + 1);
    await workbench.screenshotSideBar('chat-300-error');
  });

  test(`every text has a contrast of at least ${AA_CONTRAST}:1 in light, dark and high contrast themes`, async () => {
    const failures: string[] = [];
    for (const theme of THEMES) {
      await useTheme(theme);
      const contrasts = await textContrasts(workbench.chat, await workbench.sideBarBackground());
      // What this test is about is on the page: an answer with its stats and details, the legend, a note, an error.
      for (const [what, shown] of Object.entries(CHECKED)) {
        assert.ok(
          contrasts.some((sample) => shown(sample, item.answer)),
          `${theme}: ${what} was not checked`,
        );
      }
      const lowest = contrasts.reduce((low, sample) => (sample.ratio < low.ratio ? sample : low));
      console.log(`${theme}: ${contrasts.length} texts, lowest ${lowest.ratio.toFixed(2)}:1 (${lowest.where})`);
      for (const sample of contrasts.filter((sample) => sample.ratio < AA_CONTRAST))
        failures.push(`${theme}: "${sample.text}" (${sample.where}) ${sample.ratio.toFixed(2)}:1`);
    }
    assert.deepEqual(failures, []);
  });
});

interface TabStop {
  /** the control's id, its data-control, or its first class */
  control: string;
  focusRing: boolean;
}

/** Presses `key` `count` times and says where focus landed each time. */
async function tabWalk(workbench: Workbench, key: string, count: number): Promise<TabStop[]> {
  const stops: TabStop[] = [];
  for (let i = 0; i < count; i++) {
    await workbench.page.keyboard.press(key);
    stops.push(await focusedControl(workbench.chat));
  }
  return stops;
}

/** The control that has focus, through the components' shadow trees, and whether a focus ring is drawn. */
function focusedControl(chat: FrameLocator): Promise<TabStop> {
  return chat.locator('body').evaluate((body) => {
    let element = body.ownerDocument.activeElement;
    while (element?.shadowRoot?.activeElement) element = element.shadowRoot.activeElement;
    if (!element || element === body) return { control: 'none', focusRing: false };
    const host = ((element.getRootNode() as ShadowRoot).host ?? element) as HTMLElement;
    // vscode-button draws its ring on the part inside it.
    const ringed = element.shadowRoot?.querySelector('.base') ?? element;
    const style = body.ownerDocument.defaultView!.getComputedStyle(ringed);
    return {
      control: host.id || host.dataset.control || host.classList[0] || host.localName,
      focusRing: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
    };
  });
}

/** Buttons whose label is clipped and anything that reaches past the page's right edge. */
function cutOff(chat: FrameLocator): Promise<string[]> {
  return chat.locator('body').evaluate((body) => {
    const width = body.ownerDocument.documentElement.clientWidth;
    const problems: string[] = [];
    for (const button of body.querySelectorAll<HTMLElement>('vscode-button')) {
      const label = button.shadowRoot?.querySelector<HTMLElement>('.base');
      if (!label || button.getClientRects().length === 0) continue;
      if (label.scrollWidth > label.clientWidth) problems.push(`"${button.textContent}" is clipped`);
      if (button.getBoundingClientRect().right > width) problems.push(`"${button.textContent}" reaches past the edge`);
    }
    const transcript = body.querySelector<HTMLElement>('#transcript')!;
    if (transcript.scrollWidth > transcript.clientWidth) problems.push('the transcript scrolls sideways');
    return problems;
  });
}
