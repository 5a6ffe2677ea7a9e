import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { PNG } from 'pngjs';
import { anyresLayout } from '../../src/common/anyres';
import { FicocoError } from '../../src/common/errors';
import { LlavaEngine } from '../../src/engine/engine';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'src', 'cli', 'main.ts');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const run = promisify(execFile);

/** A 1920 × 1080 screenshot-like PNG: a light page, a dark title bar and a coloured dialog. */
function screenshotPng(): Buffer {
  const png = new PNG({ width: 1920, height: 1080 });
  for (let y = 0; y < 1080; y++) {
    for (let x = 0; x < 1920; x++) {
      const i = (y * 1920 + x) * 4;
      const titleBar = y < 40;
      const dialog = x > 660 && x < 1260 && y > 390 && y < 690;
      png.data[i] = titleBar ? 40 : dialog ? 200 : 245;
      png.data[i + 1] = titleBar ? 40 : dialog ? 60 : 245;
      png.data[i + 2] = titleBar ? 48 : dialog ? 50 : 240;
      png.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

for (const fixture of ['tiny-llava-onevision-qwen2', 'tiny-llava-next-mistral']) {
  describe(`a 1920 × 1080 screenshot on a tiled model: ${fixture}`, () => {
    const dir = path.join(FIXTURES, fixture);
    const bytes = screenshotPng();
    let engine: LlavaEngine;
    let folder: string;
    before(async () => {
      engine = await LlavaEngine.load(dir);
      folder = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-tiled-'));
      fs.writeFileSync(path.join(folder, 'screenshot.png'), bytes);
    });
    after(async () => {
      await engine.dispose();
      fs.rmSync(folder, { recursive: true, force: true });
    });

    test("the prompt holds the processor's number of image tokens, and auto keeps every token, saying why", async () => {
      const answer = await engine.ask({
        question: 'what is shown ?',
        images: [{ bytes, name: 'screenshot.png' }],
        reduction: { method: 'auto' },
        maxNewTokens: 3,
      });
      const tokens = anyresLayout(engine.config.tiling!, { width: 1920, height: 1080 }).tokens;
      assert.deepEqual(answer.stats.visualTokens, [{ original: tokens, atDecoder: tokens }]);
      const textTokens = engine.text.encode(
        await engine.text.renderPrompt([
          { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'what is shown ?' }] },
        ]),
      ).length;
      assert.equal(answer.stats.promptTokens, textTokens - 1 + tokens);
      assert.equal(answer.stats.reduction?.method, 'none');
      assert.match(answer.stats.reduction?.why ?? '', /tiled models/);
      assert.ok(answer.stats.flops.run.total > 0);
      assert.equal(answer.stats.flops.run.total, answer.stats.flops.unreduced.total);
    });

    test('a reduction method is refused with a reduction error until budgets spread over tiles', async () => {
      await assert.rejects(
        engine.ask({
          question: 'what is shown ?',
          images: [{ bytes, name: 'screenshot.png' }],
          reduction: { method: 'ficoco-v', budget: { ratio: 0.11 } },
          maxNewTokens: 1,
        }),
        (error: unknown) => error instanceof FicocoError && error.kind === 'reduction' && /tiled/.test(error.message),
      );
    });

    test('ficoco ask answers about it from the command line', async () => {
      const { stdout } = await run(
        process.execPath,
        [
          '--import',
          'tsx',
          CLI,
          'ask',
          '--model',
          dir,
          '--image',
          path.join(folder, 'screenshot.png'),
          '--max-new-tokens',
          '3',
          'what is shown ?',
        ],
        { cwd: ROOT },
      );
      assert.ok(stdout.trim().length > 0);
    });
  });
}
