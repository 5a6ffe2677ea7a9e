/**
 * A real VS Code for the e2e suite: code-server 4.100.3 on 127.0.0.1 with the freshly built VSIX installed
 * into a throwaway profile, opened in Debian's Chromium through playwright-core. test/e2e/setup.sh installs both.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Browser, chromium, FrameLocator, Locator, Page } from 'playwright-core';

export const ROOT = path.resolve(__dirname, '..', '..');
const CODE_SERVER = path.join(ROOT, '.cache', 'code-server', 'node_modules', '.bin', 'code-server');
const CHROMIUM = '/usr/bin/chromium';
const EXTENSION_ID = 'ficoco.ficoco-vision';
const STATUS_ITEM = '.part.statusbar [aria-label^="FiCoCo"]';
export const SIDE_BAR = '.part.sidebar';
const SETTINGS_SETTLE_MS = 3000;
/** How much of the browser's console a Workbench keeps for a failing test to print. */
const CONSOLE_LINES = 300;

/** What the suite needs that setup.sh installs, or undefined when everything is there. */
export function missingPrerequisite(): string | undefined {
  if (!fs.existsSync(CODE_SERVER)) return `code-server is not installed at ${CODE_SERVER}: run bash test/e2e/setup.sh`;
  if (!fs.existsSync(CHROMIUM)) return `${CHROMIUM} is missing: run bash test/e2e/setup.sh`;
  if (!builtVsix()) return 'no dist-vsix/ficoco-vision-linux-x64-*.vsix: run npm run package -- --target linux-x64';
  return undefined;
}

/** The linux-x64 package, as the Marketplace would hand it to this machine. */
function builtVsix(): string | undefined {
  const folder = path.join(ROOT, 'dist-vsix');
  const name = fs.existsSync(folder)
    ? fs.readdirSync(folder).find((file) => /^ficoco-vision-linux-x64-.*\.vsix$/.test(file))
    : undefined;
  return name && path.join(folder, name);
}

export class Workbench {
  readonly page: Page;
  /** The chat view's page inside its two webview frames. */
  readonly chat: FrameLocator;
  /** The browser's console, every frame's (the workbench's and its webviews'), the last CONSOLE_LINES lines. */
  private readonly consoleLines: string[] = [];

  private constructor(
    private readonly server: ChildProcess,
    private readonly browser: Browser,
    page: Page,
    readonly profile: string,
    readonly serverLog: () => string,
  ) {
    this.page = page;
    const keep = (line: string) => {
      this.consoleLines.push(line);
      if (this.consoleLines.length > CONSOLE_LINES) this.consoleLines.shift();
    };
    page.on('console', (message) => keep(`${message.type()} ${message.location().url}: ${message.text()}`));
    page.on('pageerror', (error) => keep(`uncaught: ${error.message}`));
    this.chat = page
      .frameLocator(`iframe.webview.ready[src*="extensionId=${EXTENSION_ID}"]`)
      .frameLocator('#active-frame');
  }

  /**
   * Installs the VSIX into a fresh profile, starts code-server on a free port and opens it in Chromium;
   * `deviceScaleFactor` 2 draws at twice the pixels, for screenshots that stay sharp.
   */
  static async start(settings: Record<string, unknown>, deviceScaleFactor = 1): Promise<Workbench> {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-e2e-'));
    const dirs = {
      extensions: path.join(profile, 'extensions'),
      userData: path.join(profile, 'user-data'),
      workspace: path.join(profile, 'workspace'),
    };
    for (const dir of Object.values(dirs)) fs.mkdirSync(dir, { recursive: true });
    const profileArgs = ['--extensions-dir', dirs.extensions, '--user-data-dir', dirs.userData];
    execFileSync(CODE_SERVER, [...profileArgs, '--install-extension', builtVsix()!], { stdio: 'pipe' });
    writeSettings(dirs.userData, settings);

    const port = await freePort();
    let log = '';
    const server = spawn(
      CODE_SERVER,
      [
        '--auth',
        'none',
        '--bind-addr',
        `127.0.0.1:${port}`,
        '--disable-workspace-trust',
        '--disable-telemetry',
        ...profileArgs,
        dirs.workspace,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    server.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()));
    server.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60_000, () => log);

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 }, deviceScaleFactor });
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.workspace)}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    return new Workbench(server, browser, page, profile, () => log);
  }

  /**
   * Rewrites the settings files and gives VS Code's file watcher a moment; the extension reads them on the next
   * question.
   */
  async writeSettings(settings: Record<string, unknown>): Promise<void> {
    writeSettings(path.join(this.profile, 'user-data'), settings);
    await new Promise((resolve) => setTimeout(resolve, SETTINGS_SETTLE_MS));
  }

  async openChat(): Promise<void> {
    await this.page.locator('.activitybar .action-label[aria-label^="FiCoCo"]').click();
    await this.chat.locator('#question').waitFor({ timeout: 30_000 });
  }

  /** Dispatches a paste event carrying the file into the chat webview, as the clipboard would. */
  async paste(file: { name: string; type: string; bytes: Buffer }): Promise<void> {
    await this.chat.locator('#question').evaluate(
      (question, pasted) => {
        const bytes = Uint8Array.from(atob(pasted.base64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], pasted.name, { type: pasted.type }));
        question.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
      },
      { name: file.name, type: file.type, base64: file.bytes.toString('base64') },
    );
  }

  /** Types the question and presses Enter, as a user would. */
  async ask(question: string): Promise<void> {
    const box = this.chat.locator('#question');
    await box.fill(question);
    await box.press('Enter');
  }

  /**
   * A turn's answer once it has ended (by default the last turn's, in the side bar's chat); an error fails with the
   * chat's message.
   */
  async finishedAnswer(chat: FrameLocator = this.chat, turn: Locator = chat.locator('.turn').last()): Promise<Locator> {
    const reply = turn.locator('.reply[data-reply="answer"]');
    try {
      await reply.and(chat.locator('[data-status="done"], [data-status="error"]')).waitFor({ timeout: 120_000 });
    } catch (error) {
      // The engine's log says what held the answer back: a load, a warm-up or an earlier measurement.
      console.log(`engine log when the answer did not finish:\n${this.engineLog()}`);
      console.log(`browser console:\n${this.browserConsole()}`);
      throw error;
    }
    if ((await reply.getAttribute('data-status')) === 'error')
      throw new Error(`the chat showed an error: ${await reply.locator('.error').innerText()}`);
    return reply;
  }

  /** Runs a command from the command palette by its title, e.g. "FiCoCo: Download Model". */
  async runCommand(title: string): Promise<void> {
    await this.page.keyboard.press('F1');
    await this.typeQuickInput(title);
  }

  /** Chooses the quick pick entry whose label contains `label`. */
  async pickQuickInput(label: string): Promise<void> {
    await this.page
      .locator('.quick-input-widget .quick-input-list .monaco-list-row', { hasText: label })
      .first()
      .click({ timeout: 60_000 });
  }

  /** Types into the open quick input (palette, quick pick filter or input box) and presses Enter. */
  async typeQuickInput(text: string): Promise<void> {
    const box = this.page.locator('.quick-input-widget .quick-input-box input');
    await box.waitFor({ timeout: 60_000 });
    await box.fill(text.startsWith('>') || !(await box.inputValue()).startsWith('>') ? text : `>${text}`);
    await this.page
      .locator('.quick-input-widget .quick-input-list .monaco-list-row')
      .first()
      .waitFor({ timeout: 10_000 })
      .catch(() => undefined);
    await box.press('Enter');
  }

  /** The workspace folder the window has open (empty at the start). */
  get workspace(): string {
    return path.join(this.profile, 'workspace');
  }

  /** Runs `command` from the Explorer's context menu of the workspace's file `name`. */
  async explorerCommand(name: string, command: string): Promise<void> {
    await this.page.keyboard.press('Control+Shift+E');
    await this.page
      .locator(`.explorer-folders-view .monaco-list-row[aria-label^="${name}"]`)
      .click({ button: 'right' });
    const item = this.page.locator('.context-view .monaco-menu .action-item', { hasText: command });
    // The menu ignores a click that comes too soon after it opened: click until it closes.
    for (let clicks = 1; ; clicks++) {
      await item.click({ timeout: 10_000 });
      try {
        await item.waitFor({ state: 'detached', timeout: 1000 });
        return;
      } catch (error) {
        if (clicks === 10) throw error;
      }
    }
  }

  /** Clicks a button of the notification whose text matches, once no progress toast is leaving, and waits for it to close. */
  async clickNotificationButton(text: RegExp, button: string): Promise<void> {
    const toast = this.page.locator('.notifications-toasts .notification-toast', { hasText: text });
    await toast.waitFor({ timeout: 120_000 });
    // A progress toast that just finished leaves the stack: clicking while the others move can miss the button.
    await this.page.waitForFunction(
      () =>
        ![...document.querySelectorAll('.notifications-toasts .notification-toast')].some((shown) =>
          /FiCoCo: (downloading|asking) /.test(shown.textContent ?? ''),
        ),
      undefined,
      { timeout: 30_000 },
    );
    await toast.getByRole('button', { name: button }).click();
    await toast.waitFor({ state: 'detached', timeout: 30_000 });
  }

  /** The status bar item's accessible label (its codicons are drawn as icons, so only the text remains). */
  async statusLabel(): Promise<string> {
    return (await this.page.locator(STATUS_ITEM).first().getAttribute('aria-label')) ?? '';
  }

  /**
   * Starts keeping every label the status bar item shows, however briefly; `statusLabelsSeen` reads them. Labels set
   * faster than the workbench draws (one frame apart) may be drawn once, as the last of them.
   */
  async recordStatusLabels(): Promise<void> {
    // No named functions inside: tsx's keepNames would call a helper the page does not have.
    await this.page.evaluate((selector) => {
      const seen: string[] = [];
      new MutationObserver(() => {
        const label = document.querySelector(selector)?.getAttribute('aria-label');
        if (label && label !== seen[seen.length - 1]) seen.push(label);
      }).observe(document.querySelector('.part.statusbar')!, {
        subtree: true,
        childList: true,
        attributes: true,
        attributeFilter: ['aria-label'],
      });
      Object.assign(window, { ficocoStatusLabels: seen });
    }, STATUS_ITEM);
  }

  async statusLabelsSeen(): Promise<string[]> {
    return this.page.evaluate(() => (window as unknown as { ficocoStatusLabels: string[] }).ficocoStatusLabels);
  }

  /** Waits until the status bar item's label matches, e.g. once the speedup is measured. */
  async waitForStatus(pattern: RegExp, timeoutMs: number): Promise<void> {
    await this.page.waitForFunction(
      ([selector, source]) =>
        new RegExp(source).test(document.querySelector(selector)?.getAttribute('aria-label') ?? ''),
      [STATUS_ITEM, pattern.source] as const,
      { timeout: timeoutMs },
    );
  }

  /** The extension's "FiCoCo Engine" output channel, as the extension host wrote it to the profile's logs. */
  engineLog(): string {
    const logs = path.join(this.profile, 'user-data', 'logs');
    const files = fs
      .readdirSync(logs, { recursive: true, encoding: 'utf8' })
      .filter((file) => path.basename(file).includes('FiCoCo Engine'));
    return files.map((file) => fs.readFileSync(path.join(logs, file), 'utf8')).join('\n');
  }

  /** What the browser's frames wrote to the console lately: VS Code's own webview errors land there. */
  browserConsole(): string {
    return this.consoleLines.join('\n');
  }

  async screenshot(name: string): Promise<void> {
    await this.clearHovers();
    await this.page.screenshot({ path: screenshotFile(name) });
  }

  /** The side bar alone (the chat view and its title), as the README and the Marketplace page show it. */
  async screenshotSideBar(name: string): Promise<void> {
    await this.clearHovers();
    await this.page.locator(SIDE_BAR).screenshot({ path: screenshotFile(name) });
  }

  /** The side bar's background, which the chat page shows through its own. */
  async sideBarBackground(): Promise<string> {
    return this.page.locator(SIDE_BAR).evaluate((sideBar) => getComputedStyle(sideBar).backgroundColor);
  }

  /** Moves the mouse away from the activity bar and waits for its hover label, which would cover the chat, to go. */
  private async clearHovers(): Promise<void> {
    await this.page.mouse.move(900, 450);
    await this.page.locator('.workbench-hover').first().waitFor({ state: 'hidden', timeout: 10_000 });
  }

  /** Drags the sash between the side bar and the editor until the side bar is `width` CSS pixels wide. */
  async setSideBarWidth(width: number): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const box = (await this.page.locator(SIDE_BAR).boundingBox())!;
      if (Math.round(box.width) === width) return;
      // The sash straddles the side bar's right edge.
      const x = box.x + box.width - 1;
      const y = box.y + box.height / 2;
      await this.page.mouse.move(x, y);
      await this.page.mouse.down();
      await this.page.mouse.move(x + width - box.width, y, { steps: 4 });
      await this.page.mouse.up();
    }
    throw new Error(`the side bar did not take a width of ${width} px`);
  }

  /** Waits until the chat page is drawn in this colour theme (`workbench.colorTheme`, set with writeSettings). */
  async waitForChatTheme(theme: string): Promise<void> {
    await this.chat.locator(`body[data-vscode-theme-id="${theme}"]`).waitFor({ timeout: 30_000 });
  }

  async close(): Promise<void> {
    await this.browser.close();
    this.server.kill();
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

/**
 * User settings, and the same as Machine settings: in code-server the extension host is remote, where machine-scoped
 * settings (ficoco.modelPath, ficoco.provider) come only from there.
 */
function writeSettings(userDataDir: string, settings: Record<string, unknown>): void {
  const quiet = {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'telemetry.telemetryLevel': 'off',
    'extensions.autoCheckUpdates': false,
  };
  for (const scope of ['User', 'Machine']) {
    fs.mkdirSync(path.join(userDataDir, scope), { recursive: true });
    fs.writeFileSync(
      path.join(userDataDir, scope, 'settings.json'),
      JSON.stringify({ ...quiet, ...settings }, null, 2),
    );
  }
}

/** Screenshots land in test-results/; the README's are copied from there to media/screenshots/. */
function screenshotFile(name: string): string {
  const dir = path.join(ROOT, 'test-results');
  fs.mkdirSync(dir, { recursive: true });
  return path.join(dir, `${name}.png`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url: string, timeoutMs: number, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`code-server did not answer ${url} within ${timeoutMs / 1000} s. Its output:\n${log()}`);
}
