import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  ChatTemplate,
  DEFAULT_RENDER_LIMITS,
  TextProcessor,
  type ChatMessage,
  type RenderLimits,
} from '../../src/engine/text';

// Model folders are untrusted: each attack is one branch of a template, chosen by the text of the first message.
const ATTACKS = {
  // 10^10 iterations of nothing
  loop: '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
  // a list of 200 million numbers, grown one by one
  range: '{% for i in range(200000000) %}{% endfor %}',
  // a string doubled to 256 Mi characters, then copied whole by upper
  double:
    "{% set ns = namespace(s='x') %}{% for i in range(28) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ " +
    'ns.s|upper|length }}',
  // a prompt of 8 Mi characters
  flood: "{% set ns = namespace(s='x') %}{% for i in range(23) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
  // a string longer than JavaScript allows
  overflow: "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
  raise: "{{ raise_exception('Only user and assistant roles are supported') }}",
};
type Attack = keyof typeof ATTACKS;

/** `normal`, unless the first message's text names an attack. */
function hostileTemplate(normal: string): string {
  const branches = Object.entries(ATTACKS).map(([name, body]) => `if messages[0]['content'] == '${name}' %}${body}`);
  return `{% ${branches.join('{% el')}{% else %}${normal}{% endif %}`;
}

const ORIGIN = '/models/hostile/chat_template.jinja';
const SIMPLE_TEMPLATE = "USER: {{ messages[0]['content'] }} ASSISTANT:";
const ask = (text: string): ChatMessage[] => [{ role: 'user', content: text }];
const modelFolderError = (message: RegExp) => ({ name: 'FicocoError', kind: 'config', message });
// A limit error may come from the parent's backstop, a few seconds after the limit itself; the rest is a loaded CI
// machine.
const MARGIN_MS = 5_000;

const disposables: Array<{ dispose(): void }> = [];
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-template-limits-'));
after(() => {
  for (const disposable of disposables) disposable.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});

function hostile(limits: Partial<RenderLimits> = {}): ChatTemplate {
  const template = new ChatTemplate(hostileTemplate(SIMPLE_TEMPLATE), ORIGIN, limits);
  disposables.push(template);
  return template;
}

/** Milliseconds `render` took to be rejected as `expected`. */
async function rejectionMs(render: Promise<unknown>, expected: object): Promise<number> {
  const started = performance.now();
  await assert.rejects(render, expected);
  return performance.now() - started;
}

async function attack(template: ChatTemplate, name: Attack, expected: object): Promise<number> {
  return rejectionMs(template.render(ask(name), {}), expected);
}

describe('a chat template cannot hang or crash the engine', () => {
  test('an endless loop stops at the time limit, and the same template then renders', async () => {
    const timeoutMs = 500;
    const template = hostile({ timeoutMs });
    assert.equal(await template.render(ask('hello'), {}), 'USER: hello ASSISTANT:');
    const timedOut =
      /chat_template\.jinja did not finish within 0\.5 s \(a loop that never ends\?\); this model folder cannot be used/;
    const elapsed = await attack(template, 'loop', modelFolderError(timedOut));
    assert.ok(elapsed < timeoutMs + MARGIN_MS, `took ${elapsed} ms`);
    assert.equal(await template.render(ask('hello again'), {}), 'USER: hello again ASSISTANT:');
  });

  test('range(200000000) stops at the memory limit, and the same template renders in a fresh process', async () => {
    // A generous time limit, so that on any machine it is the memory limit that stops this one.
    const template = hostile({ timeoutMs: 60_000 });
    const outOfMemory =
      /chat_template\.jinja used more than 256 MB while rendering; this model folder cannot be used as is\./;
    const elapsed = await attack(template, 'range', modelFolderError(outOfMemory));
    assert.ok(elapsed < 30_000, `took ${elapsed} ms`);
    assert.equal(await template.render(ask('hello'), {}), 'USER: hello ASSISTANT:');
  });

  test('a prompt longer than the output limit is refused', async () => {
    const template = hostile();
    const tooLong = new RegExp(`produced more than ${DEFAULT_RENDER_LIMITS.maxOutputChars} characters \\(8388608\\)`);
    await attack(template, 'flood', modelFolderError(tooLong));
    const small = new ChatTemplate('{% for i in range(200) %}0123456789{% endfor %}', ORIGIN, { maxOutputChars: 1000 });
    disposables.push(small);
    await assert.rejects(
      small.render(ask('hello'), {}),
      modelFolderError(/produced more than 1000 characters \(2000\)/),
    );
  });

  test("a string longer than JavaScript allows is the model folder's fault; raise_exception stays an input error", async () => {
    const template = hostile();
    await attack(template, 'overflow', modelFolderError(/ran out of room while rendering \(Invalid string length\)/));
    await attack(template, 'raise', {
      name: 'FicocoError',
      kind: 'input',
      message: /cannot render this conversation: Only user and assistant roles are supported/,
    });
    assert.equal(await template.render(ask('hello'), {}), 'USER: hello ASSISTANT:');
  });

  test("text near the output limit is the conversation's fault, not the template's", async () => {
    const template = new ChatTemplate(SIMPLE_TEMPLATE, ORIGIN, { maxOutputChars: 100 });
    disposables.push(template);
    // 95 characters would render past 100 with the template's own words; more than half the limit is refused first.
    await assert.rejects(template.render(ask('x'.repeat(95)), {}), {
      name: 'FicocoError',
      kind: 'input',
      message: /holds 95 characters of text, more than the 50 a prompt may have/,
    });
    assert.equal(await template.render(ask('hello'), {}), 'USER: hello ASSISTANT:');
  });

  test('parsing runs in the template process, within the time limit, while the engine goes on', async () => {
    // @huggingface/jinja's parse takes time quadratic in a run of whitespace: 160,000 spaces took 23 s.
    const template = new ChatTemplate(`${SIMPLE_TEMPLATE}${' '.repeat(400_000)}`, ORIGIN, { timeoutMs: 500 });
    disposables.push(template);
    let ticks = 0;
    const ticking = setInterval(() => ticks++, 50);
    try {
      const elapsed = await rejectionMs(
        template.check(),
        modelFolderError(/did not parse within 3\.5 s; this model folder cannot be used as is/),
      );
      assert.ok(elapsed < 3500 + MARGIN_MS, `took ${elapsed} ms`);
      assert.ok(ticks >= elapsed / 50 / 4, `the engine's event loop ran ${ticks} times in ${elapsed} ms`);
    } finally {
      clearInterval(ticking);
    }
  });

  test("a process slow to start (a loaded machine) does not count against the template's time", async () => {
    // Its start held 3.5 s by a preloaded script, more than the 0.1 s render limit and the grace for a late stop.
    const slowStart = path.join(root, 'slow-start.cjs');
    fs.writeFileSync(slowStart, 'Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3500);\n');
    const template = new ChatTemplate(SIMPLE_TEMPLATE, ORIGIN, { timeoutMs: 100 });
    disposables.push(template);
    const options = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = `--require ${JSON.stringify(slowStart)}`;
    try {
      await template.check();
    } finally {
      if (options === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = options;
    }
    assert.equal(await template.render(ask('hello'), {}), 'USER: hello ASSISTANT:');
  });

  test('at the default limits, a model folder whose template exhausts memory fails in seconds and then answers', async () => {
    const fixture = 'test/fixtures/tiny-llava-llama';
    const dir = fs.mkdtempSync(path.join(root, 'model-'));
    for (const file of ['tokenizer.json', 'tokenizer_config.json'])
      fs.copyFileSync(path.join(fixture, file), path.join(dir, file));
    const llavaTemplate = JSON.parse(fs.readFileSync(path.join(fixture, 'tokenizer_config.json'), 'utf8'))
      .chat_template as string;
    fs.writeFileSync(path.join(dir, 'chat_template.jinja'), hostileTemplate(llavaTemplate));
    const text = TextProcessor.load(dir, { text: '<image>' });
    disposables.push(text);

    const outOfMemory = modelFolderError(/chat_template\.jinja used more than 256 MB while rendering/);
    const elapsed = await rejectionMs(text.renderPrompt(ask('double')), outOfMemory);
    assert.ok(elapsed < DEFAULT_RENDER_LIMITS.timeoutMs + MARGIN_MS, `took ${elapsed} ms`);
    const question = 'which box does the arrow point to ?';
    const prompt = await text.renderPrompt([
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] },
    ]);
    assert.equal(prompt, `USER: <image>\n${question} ASSISTANT:`);
  });
});
