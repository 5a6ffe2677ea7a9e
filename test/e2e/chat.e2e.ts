/**
 * The extension end to end in a real VS Code (code-server) and a real browser: paste a screenshot into the
 * chat view, ask, read the built-in model's answer, its stats line and the status bar speedup; quantize it on a
 * first int4 load; change the reduction method in settings; stop an answer mid-stream; images from the Explorer; a
 * file that is not an image, a cut-off one and one too large in pixels; download a gated model with a stored token. Run by `npm run test:e2e`.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EvalItem, readEvalSet } from '../../src/cli/evalSet';
import { anyresLayout } from '../../src/common/anyres';
import { parseModelConfig } from '../../src/engine/models/registry';
import { findPreset } from '../../src/hub/presets';
import { FakeHub, startFakeHub } from '../../tools/fakeHub';
import { startServe } from '../../tools/serveProcess';
import { writeEndlessModel } from '../helpers/endlessModel';
import { ONEVISION_05B_LISTING, writeHubListing } from '../helpers/hubListings';
import { screenshotPng } from '../../tools/screenshotPng';
import { missingPrerequisite, ROOT, Workbench } from './workbench';

const evalItems = readEvalSet(path.join(ROOT, 'bench', 'eval-set', 'data.jsonl'));
/**
 * Items the built-in model answers right (checked with `ficoco ask`): the first with every visual token and with
 * 16 under ficoco-v, the second with 16 under visionzip. This suite tests the extension; the
 * model's accuracy is measured by `npm run bench:accuracy`.
 */
const evalItem = (image: string, type: string) =>
  evalItems.find((item) => path.basename(item.image) === image && item.type === type)!;
const firstItem = evalItem('1000000025.png', 'arrow');
const secondItem = evalItem('1000000005.png', 'title');
const MINUTE = 60_000;

const missing = missingPrerequisite();

describe('FiCoCo Vision in code-server', { skip: missing }, () => {
  let workbench: Workbench;
  let slowModel: string;

  before(async () => {
    slowModel = writeEndlessModel();
    workbench = await Workbench.start({ 'ficoco.reduction.method': 'ficoco-v', 'ficoco.reduction.budget': '16' });
  });

  after(async () => {
    await workbench?.close();
    fs.rmSync(slowModel, { recursive: true, force: true });
  });

  const lastTurn = () => workbench.chat.locator('.turn').last();
  const startNewChat = async () => {
    await workbench.chat.locator('#new-chat').click();
    await workbench.chat.locator('.turn').first().waitFor({ state: 'detached' });
  };
  /** The last turn's answer once it ended; an error fails the test with the chat's message. */
  const finishedAnswer = () => workbench.finishedAnswer();
  /** Waits until "Use It" took effect: the setting is written and the notification says which model answers next. */
  const modelInUse = async (folder: string) => {
    try {
      await workbench.page
        .locator('.notifications-toasts', { hasText: `the next answer comes from ${folder}/` })
        .waitFor({ timeout: MINUTE });
    } catch (error) {
      const shown = await workbench.page.locator('.notifications-toasts').innerText();
      console.log(`notifications when "Use It" did not take effect:\n${shown}\nengine log:\n${workbench.engineLog()}`);
      throw error;
    }
  };
  /** Asks after a refused image: the question comes back to the box with the reason, and no turn is added. */
  const assertQuestionHeld = async (turns: number) => {
    await workbench.ask('what does the new dialog say?');
    await workbench.chat
      .locator('#notice')
      .filter({ hasText: 'The question was not sent' })
      .waitFor({ timeout: MINUTE });
    assert.equal(await workbench.chat.locator('#question').inputValue(), 'what does the new dialog say?');
    assert.equal(await workbench.chat.locator('.turn').count(), turns, 'not asked about the images already there');
    await workbench.chat.locator('#question').fill('');
  };
  const pasteEvalImage = (item: EvalItem) =>
    workbench.paste({ name: path.basename(item.image), type: 'image/png', bytes: fs.readFileSync(item.image) });

  test('the chat view opens from the activity bar', async () => {
    await workbench.openChat();
    assert.equal(await workbench.chat.locator('#transcript').getAttribute('aria-live'), 'polite');
  });

  test(
    "a pasted evaluation screenshot gets the built-in model's correct answer, a stats line and a " + 'measured speedup',
    async () => {
      await pasteEvalImage(firstItem);
      await workbench.chat.locator('.pending-image').waitFor();
      await workbench.ask(firstItem.question);
      const answer = await finishedAnswer();
      assert.equal((await answer.locator('.reply-body').innerText()).trim(), firstItem.answer);
      const stats = await answer.locator('.stats-line').innerText();
      assert.match(stats, /^ficoco-v 16 · 16\/144 tokens · .+ · TTFT \d+ ms$/);
      // The speedup is measured after the answer (paired warm prefills); then it reaches the status bar, as a
      // figure only when reduction was measurably faster.
      await workbench.waitForStatus(/^FiCoCo (\d+\.\d×|≈1×|slower)$/, 2 * MINUTE);
      const status = await workbench.statusLabel();
      const figure = /^FiCoCo (\d+\.\d)×$/.exec(status);
      if (figure) assert.ok(Number(figure[1]) >= 1, `${status}: a figure below 1× is never a speedup`);
      await workbench.screenshot('chat');
      // The figures the extension logs: activation, engine cold start, first answer, the measured speedup.
      const figures = workbench
        .engineLog()
        .split('\n')
        .filter((line) => /activated in|loaded in|answer in|speedup \d/.test(line));
      console.log(`status bar: ${status}`);
      console.log(`engine log:\n${figures.join('\n')}`);
      assert.ok(figures.some((line) => /activated in/.test(line)) && figures.some((line) => /loaded in/.test(line)));
    },
  );

  test('Show reduction draws which patches were kept and merged', async () => {
    const figure = lastTurn().locator('.reduction-figures figure.reduction');
    assert.equal(await figure.isVisible(), false, 'the overlay is closed until asked for');
    await lastTurn().locator('.show-reduction').click();
    await figure.waitFor();
    assert.equal(await figure.locator('.patch').count(), 144);
    assert.equal(await figure.locator('.patch.kept').count(), 16);
    assert.match(await figure.locator('figcaption').innerText(), /^16 kept, \d+ (merged|dropped)/);
    assert.equal(await lastTurn().locator('.reduction-legend li').count(), 3);
    await workbench.screenshot('overlay');
  });

  test('Compare with full tokens answers again with every visual token, side by side', async () => {
    await lastTurn().locator('.compare').click();
    const full = lastTurn().locator('.reply[data-reply="full"]');
    await full.and(workbench.chat.locator('[data-status="done"]')).waitFor({ timeout: 2 * MINUTE });
    assert.match(await full.locator('.stats-line').innerText(), /^full tokens · 144\/144 tokens · TTFT \d+ ms$/);
    assert.equal((await full.locator('.reply-body').innerText()).trim(), firstItem.answer);
    assert.match(await lastTurn().locator('.reply[data-reply="answer"] > h3').innerText(), /^Answer \(ficoco-v, 16\)$/);
    await workbench.screenshot('compare');
  });

  test("on a wide screenshot, Show reduction lays the grid over the middle the model's crop saw", async () => {
    await startNewChat();
    await workbench.paste({ name: 'wide.png', type: 'image/png', bytes: screenshotPng(672, 336) });
    await workbench.chat.locator('.pending-image').waitFor({ timeout: MINUTE });
    await workbench.ask('what is in the middle ?');
    await finishedAnswer();
    await lastTurn().locator('.show-reduction').click();
    // 672 × 336 resized to 336 × 168 and cropped to its middle 168: the picture is twice the frame, half of it outside.
    const frame = lastTurn().locator('.reduction-frame.part-seen');
    await frame.waitFor();
    const box = (await frame.boundingBox())!;
    const picture = (await frame.locator('img').boundingBox())!;
    const near = (actual: number, expected: number, what: string) =>
      assert.ok(Math.abs(actual - expected) <= 2, `${what}: ${actual} px, expected ${expected} px`);
    near(picture.width, 2 * box.width, "the picture's width");
    near(picture.x, box.x - box.width / 2, "the picture's left edge");
    near(picture.height, box.height, "the picture's height");
    await workbench.screenshot('overlay-wide');
  });

  test('with ficoco.quantization int4 the first answer quantizes the built-in model, counting its layers', async () => {
    await workbench.writeSettings({
      'ficoco.reduction.method': 'ficoco-v',
      'ficoco.reduction.budget': '16',
      'ficoco.quantization': 'int4',
    });
    try {
      await startNewChat();
      await pasteEvalImage(firstItem);
      await workbench.recordStatusLabels();
      await workbench.ask(firstItem.question);
      // The packaged engine quantizes in child processes (dist/quantize-worker.js) before it answers.
      const answer = await finishedAnswer();
      assert.match(await answer.locator('.stats-line').innerText(), /^ficoco-v 16 · 16\/144 tokens · /);
      assert.notEqual((await answer.locator('.reply-body').innerText()).trim(), '');
      const quarters = workbench
        .engineLog()
        .split('\n')
        .filter((line) => /Quantizing to int4 \(first load only\): \d+ \/ \d+ layers$/.test(line));
      assert.equal(quarters.length, 4, quarters.join('\n'));
      assert.match(quarters[3], /: (\d+) \/ \1 layers$/);
      // The status bar counts the layers as they are cached (several hundred milliseconds here, minutes for a 7B).
      const labels = await workbench.statusLabelsSeen();
      const counted = labels
        .map((label) => /^FiCoCo: Quantizing to int4 \(first load only\): (\d+) \/ \d+ layers$/.exec(label))
        .filter((match) => match !== null)
        .map((match) => Number(match[1]));
      assert.ok(counted.length > 0, labels.join('\n'));
      assert.deepEqual(
        counted,
        [...counted].sort((a, b) => a - b),
        'the count only grows',
      );
    } finally {
      await workbench.writeSettings({
        'ficoco.reduction.method': 'ficoco-v',
        'ficoco.reduction.budget': '16',
        'ficoco.quantization': 'none',
      });
    }
  });

  test('a changed ficoco.reduction.method applies to the next answer without a reload', async () => {
    await workbench.writeSettings({ 'ficoco.reduction.method': 'visionzip', 'ficoco.reduction.budget': '16' });
    // A fresh conversation: the built-in model was trained on single questions, not on follow-ups.
    await startNewChat();
    await pasteEvalImage(secondItem);
    await workbench.ask(secondItem.question);
    const answer = await finishedAnswer();
    assert.match(await answer.locator('.stats-line').innerText(), /^visionzip 16 · 16\/144 tokens · /);
    assert.equal((await answer.locator('.reply-body').innerText()).trim(), secondItem.answer);
  });

  test('with the default method, auto, the built-in model answers as its measured recommendation says, and shows why', async () => {
    // Set, not removed: a key removed from the settings keeps the value code-server's Machine settings had at start.
    await workbench.writeSettings({ 'ficoco.reduction.method': 'auto' });
    await startNewChat();
    await pasteEvalImage(firstItem);
    await workbench.ask(firstItem.question);
    const answer = await finishedAnswer();
    assert.equal((await answer.locator('.reply-body').innerText()).trim(), firstItem.answer);
    // models/tiny-llava-screens/ficoco-recommendation.json: no reduction keeps 95 % and is faster on it.
    assert.match(await answer.locator('.stats-line').innerText(), /^full tokens · 144\/144 tokens · TTFT \d+ ms$/);
    assert.match(
      (await answer.locator('.stats-details').textContent()) ?? '',
      /Measured for this model \(ficoco tune\)/,
    );
    await workbench.waitForStatus(/^FiCoCo full tokens$/, MINUTE);
  });

  test('Stop, pressed from the keyboard, ends an answer mid-stream and says so', async () => {
    await workbench.writeSettings({
      'ficoco.modelPath': slowModel,
      'ficoco.reduction.method': 'none',
      'ficoco.maxNewTokens': 4096,
    });
    await startNewChat();
    await workbench.paste({
      name: 'shapes.png',
      type: 'image/png',
      bytes: fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'images', 'shapes.png')),
    });
    await workbench.ask('describe the picture');
    const reply = lastTurn().locator('.reply[data-reply="answer"]');
    await reply.and(workbench.chat.locator('[data-status="streaming"]')).waitFor({ timeout: MINUTE });
    await reply.locator('.stop').press('Enter');
    await finishedAnswer();
    assert.equal(await reply.locator('.note').innerText(), 'Stopped.');
    const generated = Number(/(\d+) tokens at/.exec((await reply.locator('.stats-details').textContent()) ?? '')?.[1]);
    assert.ok(generated > 0 && generated < 4096, `stopped after ${generated} of 4096 tokens`);
  });

  test('a file that is not an image is refused with a notice naming it; the question asked with it comes back', async () => {
    const turns = await workbench.chat.locator('.turn').count();
    await workbench.paste({ name: 'broken.png', type: 'image/png', bytes: Buffer.from('this is not a PNG file') });
    await workbench.chat
      .locator('#notice')
      .filter({ hasText: 'broken.png is not an image: supported formats are PNG, JPEG, WebP, GIF' })
      .waitFor({ timeout: MINUTE });
    assert.equal(await workbench.chat.locator('.pending-image').count(), 0, 'nothing waits for the next question');
    await assertQuestionHeld(turns);
  });

  test('from the Explorer: an image is added, a file that is not one is refused, the next question is held; the typed question stays', async () => {
    fs.copyFileSync(firstItem.image, path.join(workbench.workspace, 'dialog.png'));
    fs.writeFileSync(path.join(workbench.workspace, 'notes.png'), 'not a picture');
    await startNewChat();
    // A question typed before going to the Explorer is still in the box when the chat comes back.
    await workbench.chat.locator('#question').fill('what does the new dialog say?');
    await workbench.explorerCommand('dialog.png', 'Ask About This Image');
    await workbench.chat.locator('.pending-image').waitFor({ timeout: MINUTE });
    assert.equal(await workbench.chat.locator('#question').inputValue(), 'what does the new dialog say?');
    // The Explorer hid the chat: the page that shows the refusal is a new one.
    await workbench.explorerCommand('notes.png', 'Ask About This Image');
    await workbench.chat
      .locator('#notice')
      .filter({ hasText: 'notes.png is not an image: supported formats are PNG, JPEG, WebP, GIF' })
      .waitFor({ timeout: MINUTE });
    assert.equal(await workbench.chat.locator('.pending-image').count(), 1, 'dialog.png still waits');
    await assertQuestionHeld(0);
    await startNewChat();
  });

  test('a cut-off image gets a clear error in the chat', async () => {
    // A real PNG's header passes the intake check; its pixel data ends early, which only decoding finds.
    const truncated = fs.readFileSync(firstItem.image).subarray(0, 200);
    await workbench.paste({ name: 'cut-off.png', type: 'image/png', bytes: truncated });
    await workbench.ask('what is in this screenshot?');
    const error = lastTurn().locator('.reply[data-reply="answer"][data-status="error"] .error');
    await error.waitFor({ timeout: MINUTE });
    assert.match(await error.innerText(), /cut-off\.png could not be decoded as PNG/);
    await workbench.screenshot('corrupt-image');
  });

  test('an image whose header claims 30000 × 30000 pixels is refused by the extension host, with a notice', async () => {
    // A PNG signature and an IHDR chunk are all the host reads before refusing; the pixels are never there.
    const ihdr = Buffer.alloc(25);
    ihdr.writeUInt32BE(13, 0);
    ihdr.write('IHDR', 4, 'ascii');
    ihdr.writeUInt32BE(30000, 8);
    ihdr.writeUInt32BE(30000, 12);
    ihdr.set([8, 2, 0, 0, 0], 16);
    const huge = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), ihdr]);
    await workbench.paste({ name: 'huge.png', type: 'image/png', bytes: huge });
    const notice = workbench.chat.locator('#notice');
    await notice
      .filter({ hasText: 'huge.png is 30000 × 30000 pixels (900 megapixels); FiCoCo takes images up to 50 megapixels' })
      .waitFor({ timeout: MINUTE });
    assert.equal(await workbench.chat.locator('.pending-image').count(), 0, 'nothing waits for the next question');
  });

  test('ficoco.engine pointing at ficoco serve on 127.0.0.1: the same answer, its stats and the status bar', async () => {
    const server = await startServe('--method', 'none');
    try {
      await workbench.writeSettings({
        'ficoco.engine': `${server.url}/v1`,
        'ficoco.reduction.method': 'ficoco-v',
        'ficoco.reduction.budget': '16',
      });
      await startNewChat();
      await pasteEvalImage(firstItem);
      await workbench.ask(firstItem.question);
      const answer = await finishedAnswer();
      assert.equal((await answer.locator('.reply-body').innerText()).trim(), firstItem.answer);
      assert.match(await answer.locator('.stats-line').innerText(), /^ficoco-v 16 · 16\/144 tokens · /);
      await workbench.waitForStatus(/^FiCoCo (\d+\.\d×|≈1×|slower)$/, 2 * MINUTE);
      assert.equal(
        workbench.engineLog().includes(`from ${server.url}/v1`),
        true,
        'the answer came from the server, not a local engine process',
      );
    } finally {
      await workbench.writeSettings({ 'ficoco.reduction.method': 'ficoco-v', 'ficoco.reduction.budget': '16' });
      await server.close();
    }
  });

  test('Download Model: asking a Hub that answers nothing is cancelled from its notification', async () => {
    const connections = new Set<net.Socket>();
    const silent = http.createServer(() => undefined);
    silent.on('connection', (socket) => connections.add(socket));
    // The question arrives, and once cancelled, its connection closes: long before the extension's minute of patience.
    const asked = new Promise<http.IncomingMessage>((arrived) => silent.once('request', arrived));
    const within = <T>(promise: Promise<T>, what: string) =>
      Promise.race([
        promise,
        new Promise<never>((_, late) => setTimeout(() => late(new Error(`${what} within 20 s`)), 20_000).unref()),
      ]);
    await new Promise<void>((listening) => silent.listen(0, '127.0.0.1', listening));
    try {
      await workbench.writeSettings({
        'ficoco.hubEndpoint': `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`,
      });
      await workbench.runCommand('Notifications: Clear All Notifications');
      await workbench.runCommand('FiCoCo: Download Model');
      await workbench.pickQuickInput('Other Hub repository');
      await workbench.page.locator('.quick-input-widget input[placeholder*="owner/name"]').waitFor({ timeout: MINUTE });
      await workbench.typeQuickInput('ficoco/never-answered');
      const asking = workbench.page.locator('.notifications-toasts .notification-toast', {
        hasText: /FiCoCo: asking .* about ficoco\/never-answered/,
      });
      await asking.waitFor({ timeout: MINUTE });
      const question = await within(asked, 'the question reached the server');
      const closed = new Promise<void>((done) => question.socket.once('close', () => done()));
      await asking.getByRole('button', { name: 'Cancel' }).click();
      await within(closed, 'the cancelled question was dropped');
      await asking.waitFor({ state: 'detached', timeout: 30_000 });
      // Cancelling is no failure: nothing else is said about it.
      await workbench.page.waitForTimeout(1_000);
      const toasts = workbench.page.locator('.notifications-toasts .notification-toast', { hasText: /FiCoCo/ });
      assert.equal(await toasts.count(), 0);
    } finally {
      for (const socket of connections) socket.destroy();
      silent.close();
    }
  });

  test(
    'Download Model: a gated repository from the configured Hub endpoint, with the token from Set ' +
      'Hugging Face Token, after consent, then used for the next answer',
    async () => {
      const commit = 'c'.repeat(40);
      const token = 'hf_e2e_secret_token';
      let hub: FakeHub | undefined;
      try {
        hub = await startFakeHub({
          'ficoco/tiny-llava-screens': { folder: path.join(ROOT, 'models', 'tiny-llava-screens'), commit },
        });
        hub.requiredToken = token;
        await workbench.writeSettings({
          'ficoco.hubEndpoint': hub.url,
          'ficoco.reduction.method': 'ficoco-v',
          'ficoco.reduction.budget': '16',
        });
        await workbench.runCommand('FiCoCo: Set Hugging Face Token');
        await workbench.page.locator('.quick-input-widget input[type="password"]').waitFor({ timeout: MINUTE });
        await workbench.typeQuickInput(token);
        await workbench.page
          .locator('.notifications-toasts', { hasText: 'the Hugging Face token is stored' })
          .waitFor({ timeout: MINUTE });
        // VS Code shows at most three toasts and queues the rest: earlier tests' may hold back "Use It"'s notice.
        await workbench.runCommand('Notifications: Clear All Notifications');
        await workbench.runCommand('FiCoCo: Download Model');
        await workbench.pickQuickInput('Other Hub repository');
        await workbench.page
          .locator('.quick-input-widget input[placeholder*="owner/name"]')
          .waitFor({ timeout: MINUTE });
        await workbench.typeQuickInput('ficoco/tiny-llava-screens');
        const consent = workbench.page.locator('.monaco-dialog-box');
        await consent.waitFor({ timeout: MINUTE });
        assert.match(
          await consent.innerText(),
          /Download ficoco\/tiny-llava-screens \(4\.\d MB\)\?[\s\S]*6 files, 4\.\d MB, from http:\/\/127\.0\.0\.1:\d+[\s\S]*1 by SHA-256 \(Git LFS\), 5 by git's blob SHA-1[\s\S]*Nothing else leaves this machine/,
        );
        await workbench.screenshot('download-consent');
        await consent.getByRole('button', { name: 'Download' }).click();
        await workbench.clickNotificationButton(/Downloaded ficoco\/tiny-llava-screens/, 'Use It');
        await modelInUse('ficoco--tiny-llava-screens');
        const folder = path.join(
          workbench.profile,
          'user-data',
          'User',
          'globalStorage',
          'ficoco.ficoco-vision',
          'models',
          'ficoco--tiny-llava-screens',
          commit,
        );
        assert.ok(fs.existsSync(path.join(folder, 'ficoco-download.json')), `${folder} holds a verified download`);
        assert.ok(
          hub.requests.length > 0 && hub.requests.every((r) => r.authorization === `Bearer ${token}`),
          'every request carried the stored token',
        );
        await startNewChat();
        await pasteEvalImage(firstItem);
        await workbench.ask(firstItem.question);
        const answer = await finishedAnswer();
        assert.equal((await answer.locator('.reply-body').innerText()).trim(), firstItem.answer);
        assert.ok(workbench.engineLog().includes(folder), 'the engine loaded the downloaded folder');
      } finally {
        await hub?.close();
      }
    },
  );

  test(
    'Download Model: the recommended LLaVA-OneVision preset from its real file listing reads a 1920 × 1080 ' +
      'screenshot in tiles, and the overlay draws the tile borders',
    async () => {
      const preset = findPreset('llava-onevision-0.5b')!;
      const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-e2e-onevision-'));
      let hub: FakeHub | undefined;
      try {
        writeHubListing(ONEVISION_05B_LISTING, repo);
        hub = await startFakeHub({ [preset.hub!.repo]: { folder: repo, commit: preset.hub!.revision } });
        await workbench.writeSettings({
          'ficoco.hubEndpoint': hub.url,
          'ficoco.reduction.method': 'ficoco-v',
          'ficoco.reduction.budget': '25%',
        });
        // VS Code shows at most three toasts and queues the rest: earlier tests' may hold back "Use It"'s notice.
        await workbench.runCommand('Notifications: Clear All Notifications');
        await workbench.runCommand('FiCoCo: Download Model');
        await workbench.pickQuickInput(preset.title);
        const consent = workbench.page.locator('.monaco-dialog-box');
        await consent.waitFor({ timeout: MINUTE });
        assert.match(await consent.innerText(), /Download llava-hf\/llava-onevision-qwen2-0\.5b-ov-hf \(/);
        await consent.getByRole('button', { name: 'Download' }).click();
        await workbench.clickNotificationButton(/Downloaded llava-hf\/llava-onevision-qwen2-0\.5b-ov-hf/, 'Use It');
        await modelInUse('llava-hf--llava-onevision-qwen2-0.5b-ov-hf');
        await startNewChat();
        await workbench.paste({ name: 'screenshot.png', type: 'image/png', bytes: screenshotPng(1920, 1080) });
        await workbench.ask('what is shown ?');
        const answer = await finishedAnswer();
        const config = JSON.parse(fs.readFileSync(path.join(repo, 'config.json'), 'utf8')) as unknown;
        const tiling = parseModelConfig(config, 'config.json').config.tiling!;
        const layout = anyresLayout(tiling, { width: 1920, height: 1080 });
        const stats = await answer.locator('.stats-line').innerText();
        assert.match(stats, new RegExp(`^ficoco-v 25% · \\d+/${layout.tokens} tokens · `), stats);
        await lastTurn().locator('.show-reduction').click();
        const figure = lastTurn().locator('.reduction-figures figure.reduction:not(.whole-image)');
        await figure.waitFor();
        assert.ok((await figure.locator('.tile-border').count()) > 0, 'tile borders are drawn');
        // Beside it, the thumbnail the model reads too: the whole screenshot squashed to one tile.
        const thumbnail = lastTurn().locator('.reduction-figures figure.reduction.whole-image');
        assert.equal(await thumbnail.locator('.patch').count(), tiling.featuresPerSide ** 2);
        assert.match(await thumbnail.locator('figcaption').innerText(), /^Whole image in one tile: \d+ kept/);
        await workbench.screenshot('tiled-overlay');
      } finally {
        await hub?.close();
        fs.rmSync(repo, { recursive: true, force: true });
      }
    },
  );
});
