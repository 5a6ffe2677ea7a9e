/**
 * The request bodies Continue, Cline and Open WebUI send to an OpenAI-compatible server with an image, as their
 * sources build them (docs/serving.md), sent to `ficoco serve` as they are: each is answered, sees its image, and
 * streams well-formed chunks with usage where asked.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { type ServeProcess, startServe } from '../../tools/serveProcess';

const ROOT = path.join(__dirname, '..', '..');
const PNG = fs.readFileSync(path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png')).toString('base64');
const JPEG = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'preprocess', 'baseline.jpg')).toString('base64');
const MODEL = 'tiny-llava-screens';

/** How each client shapes a question with a screenshot (and what else it adds). */
const CLIENT_BODIES: Record<string, Record<string, unknown>> = {
  // core/llm/openaiTypeConverters.ts toChatBody + openai-adapters: JPEG re-encoded, detail "auto", max_tokens 4096.
  Continue: {
    messages: [
      { role: 'system', content: 'You are an expert software developer. You give helpful and concise responses.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'which box does the arrow point to ?' },
          { type: 'image_url', image_url: { url: `data:image/jpeg;base64,${JPEG}`, detail: 'auto' } },
        ],
      },
    ],
    model: MODEL,
    max_tokens: 4096,
    stream: true,
    stream_options: { include_usage: true },
  },
  // src/core/api/providers/openai.ts: system prompt first, the task in <task> tags, then the image; temperature 0.
  Cline: {
    model: MODEL,
    messages: [
      { role: 'system', content: 'You are Cline, a highly skilled software engineer.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: '<task>\nwhich box does the arrow point to ?\n</task>' },
          { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
        ],
      },
    ],
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  },
  // routers/openai.py: metadata popped; an earlier turn's image resent, the follow-up as plain text; a user object.
  'Open WebUI': {
    stream: true,
    model: MODEL,
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'what is the title ?' },
          { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
        ],
      },
      { role: 'assistant', content: 'notes' },
      { role: 'user', content: 'which box does the arrow point to ?' },
    ],
    user: { name: 'Ada', id: 'u1', email: 'ada@example.com', role: 'user' },
  },
};

describe('ficoco serve answers the request shapes of Continue, Cline and Open WebUI', () => {
  let server: ServeProcess;
  let client: OpenAI;
  before(async () => {
    server = await startServe('--method', 'auto');
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(() => server.close());

  for (const [name, body] of Object.entries(CLIENT_BODIES)) {
    test(name, async () => {
      const stream = (await client.chat.completions.create(
        body as unknown as OpenAI.ChatCompletionCreateParamsStreaming,
      )) as AsyncIterable<OpenAI.ChatCompletionChunk & { ficoco?: { stats: { visualTokens: unknown[] } } }>;
      let role: string | undefined;
      let finish: string | null = null;
      let usage: (OpenAI.CompletionUsage & { ficoco?: { visual_tokens: number } }) | undefined;
      let images = 0;
      for await (const chunk of stream) {
        assert.equal(chunk.object, 'chat.completion.chunk');
        role ??= chunk.choices[0]?.delta.role;
        finish = chunk.choices[0]?.finish_reason ?? finish;
        usage = (chunk.usage as typeof usage) ?? usage;
        images = chunk.ficoco?.stats.visualTokens.length ?? images;
      }
      assert.equal(role, 'assistant');
      assert.ok(finish === 'stop' || finish === 'length', `finish_reason ${finish}`);
      assert.equal(images, 1, 'the screenshot reached the model');
      if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage) {
        assert.ok(usage && usage.prompt_tokens > 144, 'usage counts the image tokens');
        assert.equal(usage.ficoco?.visual_tokens, 144);
      } else assert.equal(usage, undefined);
    });
  }

  test("Open WebUI's background title request: text only, not streamed", async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      stream: false,
      max_tokens: 8,
      messages: [{ role: 'user', content: 'Create a concise, 3-5 word title for the chat.' }],
    });
    assert.equal(completion.choices[0].message.role, 'assistant');
    assert.equal(completion.usage?.completion_tokens, completion.usage!.total_tokens - completion.usage!.prompt_tokens);
  });
});
