/**
 * `ficoco serve` as users run it (the CLI, engine processes, 127.0.0.1) against the official `openai` client: answers
 * equal `ficoco ask`'s, streamed or not; errors as OpenAI error objects; the queue, disconnects, auth and limits.
 */
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { EngineClient } from '../../src/client/engineClient';
import { buildServer } from '../../src/server/app';
import { IMAGE_ALONE_QUESTION } from '../../src/server/chatRequest';
import { WorkerPool } from '../../src/server/workerPool';
import { coresPerWorker, thisMachineCores } from '../../src/engine/runtime/threads';
import { writeEndlessModel } from '../helpers/endlessModel';
import { screenshotPng } from '../../tools/screenshotPng';
import { type ServeProcess, startServe } from '../../tools/serveProcess';
import { runCli } from '../helpers/cli';
import type { PrefillProgress } from '../../src/common/prefillProgress';
import type { AnswerStats } from '../../src/engine/api';
import { parsePrefillProgress } from '../../src/protocol/engine';

const ROOT = path.join(__dirname, '..', '..');
const HOST = path.join(ROOT, 'src', 'host', 'main.ts');
const IMAGE = path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png');
const QUESTION = 'which box does the arrow point to ?';

const dataUrl = (file: string) => `data:image/png;base64,${fs.readFileSync(file).toString('base64')}`;

const imageQuestion = (url: string, text = QUESTION): OpenAI.ChatCompletionMessageParam[] => [
  {
    role: 'user',
    content: [
      { type: 'image_url', image_url: { url } },
      { type: 'text', text },
    ],
  },
];

/** A stream chunk's `ficoco.progress`, a field the client's types do not have. */
const progressOf = (chunk: OpenAI.ChatCompletionChunk) =>
  (chunk as { ficoco?: { progress?: unknown } }).ficoco?.progress;

/** The `ficoco` request field: not in the client's types, passed through as is. */
const ficoco = (method: string, budget?: string) => ({ ficoco: { method, ...(budget ? { budget } : {}) } }) as object;

describe('ficoco serve with the built-in model', () => {
  let server: ServeProcess;
  let client: OpenAI;
  let askAnswer: string;

  before(async () => {
    server = await startServe('--method', 'none');
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const { stdout } = await runCli([
      'ask',
      '--image',
      IMAGE,
      '--method',
      'ficoco-v',
      '--budget',
      '16',
      '--max-new-tokens',
      '8',
      QUESTION,
    ]);
    askAnswer = stdout.split('\n\n')[0];
  });
  after(() => server.close());

  test('GET /v1/models, /health, /ready', async () => {
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => [m.id, m.object]),
      [['tiny-llava-screens', 'model']],
    );
    assert.deepEqual(await (await fetch(`${server.url}/health`)).json(), { status: 'ok' });
    // On 127.0.0.1 nothing crosses a network: no word about plain http.
    assert.ok(!server.log.some((line) => /plain http/.test(line)), server.log.join('\n'));
    // The chat route opened in a browser: the method is wrong, not the address.
    const got = await fetch(`${server.url}/v1/chat/completions?x=1`);
    assert.equal(got.status, 405);
    assert.equal(got.headers.get('allow'), 'POST');
    assert.match(
      ((await got.json()) as { error: { message: string } }).error.message,
      /send the chat completion request with POST/,
    );
    assert.equal((await fetch(`${server.url}/v1/nothing`)).status, 404);
    assert.deepEqual(await (await fetch(`${server.url}/ready`)).json(), {
      status: 'ready',
      model: 'tiny-llava-screens',
      workers: 1,
    });
  });

  test("a non-streamed answer equals ficoco ask's greedy answer, with the reduction's figures in usage", async () => {
    const completion = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: imageQuestion(dataUrl(IMAGE)),
      max_tokens: 8,
      ...ficoco('ficoco-v', '16'),
    });
    assert.equal(completion.choices[0].message.content, askAnswer);
    assert.equal(completion.choices[0].finish_reason, 'stop');
    const usage = completion.usage as OpenAI.CompletionUsage & { ficoco: Record<string, number> };
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    assert.equal(usage.ficoco.visual_tokens, 144);
    assert.equal(usage.ficoco.visual_tokens_kept, 16);
    assert.ok(usage.ficoco.prefill_flops < usage.ficoco.unreduced_prefill_flops);
    assert.ok(usage.ficoco.prefill_ms > 0);
    const stats = (completion as unknown as { ficoco: { stats: { patchFates: { patches: string }[] } } }).ficoco.stats;
    assert.equal(stats.patchFates[0].patches.length, 144, 'the overlay bookkeeping comes along');
  });

  test('a streamed answer is the same text, in pieces, then usage when asked for', async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: imageQuestion(dataUrl(IMAGE)),
      max_tokens: 8,
      stream: true,
      stream_options: { include_usage: true },
      ...ficoco('ficoco-v', '16'),
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
      assert.equal(progressOf(chunk), undefined, 'no progress unless asked for');
    }
    assert.equal(text, askAnswer);
    assert.equal(finish, 'stop');
    assert.ok(usage && usage.completion_tokens > 0);
  });

  test("asked for, a stream carries the prefill's progress before the answer, in empty deltas", async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: imageQuestion(dataUrl(IMAGE)),
      max_tokens: 8,
      stream: true,
      ficoco: { method: 'ficoco-v', budget: '16', progress: true },
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    let text = '';
    const progress: PrefillProgress[] = [];
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content ?? '';
      text += content;
      const reported = progressOf(chunk);
      if (reported === undefined) continue;
      assert.equal(text, '', 'progress comes before the answer');
      assert.deepEqual(chunk.choices, [{ index: 0, delta: {}, finish_reason: null }]);
      progress.push(parsePrefillProgress(reported));
    }
    assert.equal(text, askAnswer);
    const stages = progress.map((p) => p.stage);
    assert.deepEqual([...new Set(stages)], ['image', 'prompt'], 'the image, then the prompt');
    assert.deepEqual([progress[0].stage, progress[0].done, progress[0].total], ['image', 0, 1], 'one image, to read');
    const last = progress.at(-1)!;
    assert.equal(last.stage, 'prompt');
    assert.equal(last.done, last.total, 'the prompt read to its end');
  });

  test("ficoco with only options keeps the server's reduction; a budget needs a method; typos are refused", async () => {
    const completion = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: imageQuestion(dataUrl(IMAGE)),
      max_tokens: 2,
      ficoco: { progress: true },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.equal(
      (completion.usage as unknown as { ficoco: { visual_tokens_kept: number } }).ficoco.visual_tokens_kept,
      144,
    );
    // Empty params are none: what the extension sends with `auto`, its default.
    const auto = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: imageQuestion(dataUrl(IMAGE)),
      max_tokens: 2,
      ficoco: { method: 'auto', params: {} },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.equal(auto.choices[0].message.role, 'assistant');
    await assert.rejects(
      client.chat.completions.create({
        model: 'tiny-llava-screens',
        messages: imageQuestion(dataUrl(IMAGE)),
        ficoco: { budget: '16' },
      } as OpenAI.ChatCompletionCreateParamsNonStreaming),
      (error: InstanceType<typeof OpenAI.BadRequestError>) => {
        assert.ok(error instanceof OpenAI.BadRequestError);
        assert.equal(error.param, 'ficoco.method');
        assert.match(error.message, /ficoco\.budget and ficoco\.params need ficoco\.method/);
        return true;
      },
    );
    // A misspelt field is refused, not dropped (which would run with the server's reduction).
    await assert.rejects(
      client.chat.completions.create({
        model: 'tiny-llava-screens',
        messages: imageQuestion(dataUrl(IMAGE)),
        ficoco: { method: 'ficoco-v', budgett: '16' },
      } as OpenAI.ChatCompletionCreateParamsNonStreaming),
      (error: InstanceType<typeof OpenAI.BadRequestError>) => {
        assert.ok(error instanceof OpenAI.BadRequestError);
        assert.equal(error.param, 'ficoco.budgett');
        assert.match(
          error.message,
          /ficoco\.budgett is not supported; use "method", "budget", "params", or "progress"\.$/,
        );
        return true;
      },
    );
  });

  test('stop strings end the answer before them; the server default (none) keeps every visual token', async () => {
    const full = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: imageQuestion(dataUrl(IMAGE), 'what is the title ?'),
      max_tokens: 12,
    });
    const text = full.choices[0].message.content!;
    assert.equal((full.usage as unknown as { ficoco: { visual_tokens_kept: number } }).ficoco.visual_tokens_kept, 144);
    assert.ok(text.length >= 3, `"${text}" is long enough to stop inside`);
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
    const stopped = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: imageQuestion(dataUrl(IMAGE), 'what is the title ?'),
      max_tokens: 12,
      stop: [stop, 'never said'],
    });
    assert.equal(stopped.choices[0].message.content, text.slice(0, text.indexOf(stop)));
    assert.equal(stopped.choices[0].finish_reason, 'stop');
  });

  test('errors are OpenAI error objects: a bad image, a web address, an unknown model', async () => {
    const broken = `data:image/png;base64,${fs.readFileSync(IMAGE).subarray(0, 100).toString('base64')}`;
    await assert.rejects(
      client.chat.completions.create({ model: 'tiny-llava-screens', messages: imageQuestion(broken) }),
      (error: InstanceType<typeof OpenAI.BadRequestError>) => {
        assert.ok(error instanceof OpenAI.BadRequestError);
        assert.equal(error.code, 'invalid_image');
        assert.match(error.message, /message-0-part-0\.png/);
        return true;
      },
    );
    await assert.rejects(
      client.chat.completions.create({
        model: 'tiny-llava-screens',
        messages: imageQuestion('https://example.com/screenshot.png'),
      }),
      (error: InstanceType<typeof OpenAI.BadRequestError>) => {
        assert.ok(error instanceof OpenAI.BadRequestError);
        assert.match(error.message, /fetches nothing: send the image itself as a data: URL/);
        assert.equal(error.param, 'messages[0].content[0].image_url');
        return true;
      },
    );
    await assert.rejects(
      client.chat.completions.create({ model: 'gpt-4o', messages: imageQuestion(dataUrl(IMAGE)) }),
      (error: InstanceType<typeof OpenAI.NotFoundError>) => {
        assert.ok(error instanceof OpenAI.NotFoundError);
        assert.equal(error.code, 'model_not_found');
        return true;
      },
    );
  });

  test('ficoco.params carries a schedule to the engine; one the model cannot follow is a 400 naming it', async () => {
    const scheduled = (schedule: string) =>
      client.chat.completions.create({
        model: 'tiny-llava-screens',
        messages: imageQuestion(dataUrl(IMAGE)),
        max_tokens: 1,
        ficoco: { method: 'ficoco-v', budget: '16', params: { schedule } },
      } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    // The built-in model runs 5 tower layers and FiCoCo-V reduces from layer 3: 128 tokens removed as 3 : 1.
    const completion = await scheduled('3,1');
    const { stats } = (completion as unknown as { ficoco: { stats: AnswerStats } }).ficoco;
    assert.deepEqual(stats.reduction?.params, { schedule: '3,1' });
    assert.deepEqual(
      stats.steps.map((step) => [step.site, step.tokensBefore, step.tokensAfter]),
      [
        ['vision:3', 144, 48],
        ['vision:4', 48, 16],
      ],
    );
    await assert.rejects(scheduled('1,1,1'), (error: InstanceType<typeof OpenAI.BadRequestError>) => {
      assert.ok(error instanceof OpenAI.BadRequestError, String(error));
      assert.equal(
        error.message,
        '400 ficoco-v.schedule has 3 shares, but this model reduces at most 2 layers from its start, layer 3 ' +
          '(3…4): give at most 2, or start earlier.',
      );
      return true;
    });
  });

  test('a schema refusal is one line naming the field and what it takes', async () => {
    const refusals: [OpenAI.ChatCompletionMessageParam[], string, string][] = [
      [
        [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } }] }],
        'messages[0].content[0].type',
        'messages[0].content[0].type "input_audio" is not supported; use "text" or "image_url".',
      ],
      [
        [
          { role: 'user', content: 'click the button' },
          { role: 'assistant', content: null, tool_calls: [] },
          { role: 'tool', content: 'clicked', tool_call_id: '1' },
          { role: 'user', content: 'and now ?' },
        ],
        'messages[2].role',
        'messages[2].role "tool" is not supported; use "system", "developer", "user", or "assistant".',
      ],
      [
        [{ role: 'user', content: [{ type: 'image_url', image_url: {} as { url: string } }] }],
        'messages[0].content[0].image_url.url',
        'messages[0].content[0].image_url.url is required.',
      ],
    ];
    for (const [messages, param, message] of refusals)
      await assert.rejects(
        client.chat.completions.create({ model: 'tiny-llava-screens', messages }),
        (error: InstanceType<typeof OpenAI.BadRequestError>) => {
          assert.ok(error instanceof OpenAI.BadRequestError, String(error));
          assert.equal(error.param, param);
          assert.equal(error.message, `400 ${message}`);
          return true;
        },
      );
  });

  test('top_k, min_p and repetition_penalty are honoured: top_k 1 answers as greedy at any temperature', async () => {
    const question = { model: 'tiny-llava-screens', messages: imageQuestion(dataUrl(IMAGE)), max_tokens: 8 };
    const answer = async (fields: object) =>
      (await client.chat.completions.create({ ...question, ...fields })).choices[0].message.content;
    const greedy = await answer({ temperature: 0 });
    const sampled = [1, 2, 3].map((seed) => answer({ temperature: 2, seed, top_k: 1 }));
    assert.deepEqual(await Promise.all(sampled), [greedy, greedy, greedy]);
    const unrestricted = [1, 2, 3].map((seed) => answer({ temperature: 2, seed }));
    assert.ok(
      (await Promise.all(unrestricted)).some((text) => text !== greedy),
      'temperature 2 alone samples',
    );
    // min_p 1 keeps only the top token; a penalty of 1 changes nothing.
    assert.equal(await answer({ temperature: 2, seed: 4, min_p: 1, repetition_penalty: 1 }), greedy);
    const refusals: [object, string, string][] = [
      [{ top_k: -1 }, 'top_k', 'top_k must be >= 0.'],
      [{ top_k: 1e20 }, 'top_k', 'top_k must be <= 2147483647.'],
      [{ top_k: 2.5 }, 'top_k', 'top_k is 2.5; expected integer or null.'],
      [{ min_p: 1.5 }, 'min_p', 'min_p must be <= 1.'],
      [{ repetition_penalty: 0 }, 'repetition_penalty', 'repetition_penalty must be > 0.'],
    ];
    for (const [fields, param, message] of refusals)
      await assert.rejects(
        client.chat.completions.create({ ...question, ...fields }),
        (error: InstanceType<typeof OpenAI.BadRequestError>) => {
          assert.ok(error instanceof OpenAI.BadRequestError, String(error));
          assert.equal(error.param, param);
          assert.equal(error.message, `400 ${message}`);
          return true;
        },
      );
  });

  test('a content array of one part is read as OpenAI defines it', async () => {
    // Text alone is what the extension sends for a question without an image (RemoteEngine).
    const completion = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'what is the title ?' }] }],
      max_tokens: 2,
      stop: '',
    });
    assert.equal(completion.usage?.completion_tokens, 2, 'an empty stop string stops nothing');
    // An image alone is answered as OpenAI's models answer it: the server asks for a description.
    const alone = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(IMAGE) } }] }],
      max_tokens: 4,
    });
    const described = await client.chat.completions.create({
      model: 'tiny-llava-screens',
      messages: imageQuestion(dataUrl(IMAGE), IMAGE_ALONE_QUESTION),
      max_tokens: 4,
    });
    assert.equal(alone.choices[0].message.content, described.choices[0].message.content);
    assert.equal((await client.models.retrieve('tiny-llava-screens')).id, 'tiny-llava-screens');
    await assert.rejects(client.models.retrieve('gpt-4o'), (error) => error instanceof OpenAI.NotFoundError);
  });

  test('what FiCoCo cannot honour is refused unless it asks for nothing: penalties, tool calls, JSON, audio', async () => {
    const question = { model: 'tiny-llava-screens', messages: imageQuestion(dataUrl(IMAGE)), max_tokens: 2 };
    const tools: OpenAI.ChatCompletionTool[] = [
      { type: 'function', function: { name: 'click', parameters: { type: 'object', properties: {} } } },
    ];
    // Tools the model may leave unused are a question it answers in text; so is every field at the value clients
    // send by default, and those that change nothing in an answer.
    const neutral = await client.chat.completions.create({
      ...question,
      tools,
      tool_choice: 'auto',
      n: 1,
      frequency_penalty: 0,
      presence_penalty: 0,
      logit_bias: {},
      logprobs: false,
      top_logprobs: 0,
      response_format: { type: 'text' },
      modalities: ['text'],
      reasoning_effort: 'none',
      verbosity: 'medium',
      store: false,
      user: 'ada',
      metadata: { team: 'ui' },
      service_tier: 'auto',
      parallel_tool_calls: false,
      prompt_cache_key: 'chat-1',
      safety_identifier: 'ada',
      prediction: { type: 'content', content: 'the red box' },
    });
    assert.equal(typeof neutral.choices[0].message.content, 'string');
    const refusals: [Partial<OpenAI.ChatCompletionCreateParamsNonStreaming>, string][] = [
      [{ frequency_penalty: 1.5 }, 'frequency_penalty'],
      [{ presence_penalty: -0.5 }, 'presence_penalty'],
      [{ logit_bias: { '50256': -100 } }, 'logit_bias'],
      [{ n: 2 }, 'n'],
      [{ tools, tool_choice: 'required' }, 'tool_choice'],
      [{ tools, tool_choice: { type: 'function', function: { name: 'click' } } }, 'tool_choice'],
      [{ functions: [{ name: 'click' }], function_call: { name: 'click' } }, 'function_call'],
      [{ response_format: { type: 'json_object' } }, 'response_format'],
      [{ logprobs: true, top_logprobs: 2 }, 'logprobs'],
      [{ top_logprobs: 2 }, 'top_logprobs'],
      [{ modalities: ['text', 'audio'] }, 'modalities'],
      [{ audio: { voice: 'alloy', format: 'wav' } }, 'audio'],
      [{ web_search_options: {} }, 'web_search_options'],
      [{ reasoning_effort: 'high' }, 'reasoning_effort'],
      [{ verbosity: 'low' }, 'verbosity'],
      [{ store: true }, 'store'],
      [{ moderation: { model: 'omni-moderation-latest' } }, 'moderation'],
    ];
    for (const [fields, param] of refusals)
      await assert.rejects(
        client.chat.completions.create({ ...question, ...fields }),
        (error: InstanceType<typeof OpenAI.BadRequestError>) => {
          assert.ok(error instanceof OpenAI.BadRequestError, String(error));
          assert.equal(error.param, param);
          // One line: the field, why FiCoCo cannot honour it, and what to send instead.
          assert.match(error.message, new RegExp(`^400 ${param} is not supported: FiCoCo [^;]+; [^.]+\\.$`));
          return true;
        },
      );
    for (const [fields, param] of [
      [{ max_completion_tokens: 100_000 }, 'max_completion_tokens'],
      [{ ficoco: { method: 'none', budget: '16' } } as object, 'ficoco.budget'],
      [{ messages: [{ role: 'user', content: 7 }] } as object, 'messages[0].content'],
    ] as const)
      await assert.rejects(
        client.chat.completions.create({ ...question, ...fields }),
        (error: InstanceType<typeof OpenAI.BadRequestError>) => {
          assert.ok(error instanceof OpenAI.BadRequestError, String(error));
          assert.equal(error.param, param);
          return true;
        },
      );
  });

  test('a stream the engine refuses before it starts is an HTTP error, not a 200 carrying one', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model: 'tiny-llava-screens',
        messages: imageQuestion(dataUrl(IMAGE)),
        stream: true,
        ...ficoco('nope', '11%'),
      } as OpenAI.ChatCompletionCreateParamsStreaming),
      (error: InstanceType<typeof OpenAI.BadRequestError>) => {
        assert.ok(error instanceof OpenAI.BadRequestError, String(error));
        assert.equal(error.code, 'invalid_reduction');
        return true;
      },
    );
  });

  test('without an API key, only requests addressed to this machine are answered (DNS rebinding)', async () => {
    // A web page whose name was rebound to 127.0.0.1 reaches the server, but its requests still carry that name.
    const refused = await requestWithHost(`${server.url}/v1/models`, 'attacker.example');
    assert.equal(refused.status, 403);
    const { error } = JSON.parse(refused.body) as { error: { code: string; message: string } };
    assert.equal(error.code, 'host_not_allowed');
    assert.match(
      error.message,
      /answers only requests addressed to localhost, 127\.0\.0\.1 or \[::1\]; this one was addressed to attacker\.example/,
    );
    const port = new URL(server.url).port;
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'LOCALHOST'])
      assert.equal((await requestWithHost(`${server.url}/v1/models`, host)).status, 200, host);
  });

  test('/metrics counts every chat completion once by its status, those refused before the engine too', async () => {
    const before = await requestCounts(server.url);
    const question = { model: 'tiny-llava-screens', messages: imageQuestion(dataUrl(IMAGE)), max_tokens: 1 };
    await client.chat.completions.create(question);
    const refusals: object[] = [
      { model: 'gpt-4o' },
      { messages: [{ role: 'user', content: 7 }] },
      { ficoco: { budget: '16' } },
    ];
    for (const fields of refusals)
      await assert.rejects(client.chat.completions.create({ ...question, ...fields } as typeof question));
    await requestWithHost(`${server.url}/v1/chat/completions`, 'attacker.example');
    const after = await requestCounts(server.url);
    const added = Object.fromEntries(
      Object.entries(after)
        .map(([status, count]) => [status, count - (before[status] ?? 0)])
        .filter(([, count]) => count !== 0),
    );
    assert.deepEqual(added, { 200: 1, 400: 2, 403: 1, 404: 1 });
  });

  test('/metrics counts requests and tokens in Prometheus text', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /^ficoco_requests_total\{status="200"\} [1-9]\d*$/m);
    assert.match(text, /^ficoco_requests_total\{status="400"\} [1-9]\d*$/m);
    assert.match(text, /^ficoco_tokens_total\{kind="visual_kept"\} [1-9]\d*$/m);
    assert.match(text, /^ficoco_queue_depth 0$/m);
    assert.match(text, /^ficoco_time_to_first_token_seconds_count [1-9]\d*$/m);
  });
});

describe('ficoco serve under load and over the network', () => {
  let endless: string;
  before(() => {
    endless = writeEndlessModel();
  });
  after(() => fs.rmSync(endless, { recursive: true, force: true }));

  /**
   * The server in this process over one worker of the endless model, with a queue of one. `admitted(answer)` resolves
   * when the server has given the next chat completion its place, and fails if `answer` comes first (it was refused).
   */
  function endlessServer(options: {
    maxTokens: number;
    requestTimeoutMs: number;
    bodyGraceMs?: number;
    keepAliveMs?: number;
  }) {
    const pool = new WorkerPool({
      workers: 1,
      queueLimit: 1,
      model: () => ({ modelDir: endless, provider: 'cpu', threads: 1 }),
      newClient: () => new EngineClient({ hostModule: HOST, execArgv: ['--import', 'tsx'] }),
      log: () => undefined,
    });
    const app = buildServer({
      pool,
      modelId: 'endless',
      bodyLimit: 2 ** 20,
      defaults: { reduction: undefined, maxTokens: options.maxTokens },
      requestTimeoutMs: options.requestTimeoutMs,
      bodyGraceMs: options.bodyGraceMs,
      ...(options.keepAliveMs ? { keepAliveMs: options.keepAliveMs } : {}),
    });
    // Registered after the server's own hooks, so it runs only for a request they admitted.
    const admissions = new EventEmitter();
    app.addHook('onRequest', async (request) => {
      if (request.routeOptions.url === '/v1/chat/completions') admissions.emit('admitted');
    });
    const admitted = (answer: Promise<{ status: number; body: string }>) =>
      Promise.race([
        once(admissions, 'admitted'),
        answer.then((early) => assert.fail(`answered ${early.status} without a place: ${early.body}`)),
      ]);
    return { pool, app, admitted };
  }

  test('a full queue answers 429 with Retry-After; a client that disconnects frees its slot', async () => {
    const server = await startServe('--model', endless, '--method', 'none', '--queue', '0');
    try {
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const model = path.basename(endless);
      const messages = imageQuestion(`data:image/png;base64,${screenshotPng(64, 48).toString('base64')}`, 'go on');
      const controller = new AbortController();
      const stream = await client.chat.completions.create(
        { model, messages, max_tokens: 4000, stream: true },
        { signal: controller.signal },
      );
      const iterator = stream[Symbol.asyncIterator]();
      await iterator.next();
      await iterator.next();
      await assert.rejects(
        client.chat.completions.create({ model, messages, max_tokens: 1 }),
        (error: InstanceType<typeof OpenAI.RateLimitError>) => {
          assert.ok(error instanceof OpenAI.RateLimitError);
          assert.equal(error.code, 'queue_full');
          assert.match(error.headers.get('retry-after') ?? '', /^\d+$/);
          return true;
        },
      );
      controller.abort();
      const freed = Date.now();
      let busy = 1;
      while (busy > 0 && Date.now() - freed < 10_000) {
        const metrics = await (await fetch(`${server.url}/metrics`)).text();
        busy = Number(/^ficoco_workers_busy (\d+)$/m.exec(metrics)?.[1]);
        if (busy > 0) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(busy, 0, 'the slot was freed');
      const next = await client.chat.completions.create({ model, messages, max_tokens: 2 });
      assert.equal(next.choices[0].finish_reason, 'length');
    } finally {
      await server.close();
    }
  });

  test('workers share the cores: each engine defaults to its share, unless --threads says otherwise', async () => {
    const cores = thisMachineCores() ?? os.availableParallelism();
    const shared = await startServe('--workers', '2', '--method', 'none');
    try {
      const ready = shared.log.find((line) => / at http:\S+\/v1 \(/.test(line)) ?? '';
      assert.match(ready, new RegExp(`\\(2 worker\\(s\\), ${coresPerWorker(cores, 2)} of ${cores} cores each, queue`));
      // The built-in model runs on one thread whatever its share (its prefill is tiny).
      const loaded = shared.log.filter((line) => /\[ficoco-host\] loaded on cpu, 1 thread\(s\)/.test(line));
      assert.equal(loaded.length, 2, shared.log.join('\n'));
    } finally {
      await shared.close();
    }
    const told = await startServe('--workers', '2', '--threads', '1', '--method', 'none');
    try {
      assert.ok(
        told.log.some((line) => /\(2 worker\(s\), queue/.test(line)),
        told.log.join('\n'),
      );
    } finally {
      await told.close();
    }
  });

  test('when memory lets fewer workers start than asked, they load again with the cores the others would have had', async () => {
    const lines: string[] = [];
    const builtIn = path.join(ROOT, 'models', 'tiny-llava-screens');
    const pool = new WorkerPool({
      workers: 3,
      queueLimit: 0,
      model: (running) => ({ modelDir: builtIn, provider: 'cpu', ...(running > 1 ? { cores: 1 } : {}) }),
      newClient: () =>
        new EngineClient({ hostModule: HOST, execArgv: ['--import', 'tsx'], log: (line) => lines.push(line) }),
      log: (line) => lines.push(line),
      freeMemory: () => 0,
    });
    try {
      await pool.start();
      assert.equal(pool.workers, 1);
      assert.deepEqual(pool.model, { modelDir: builtIn, provider: 'cpu' });
      const log = lines.join('\n');
      assert.match(log, /^started 1 of 3 engine workers: each holds [\d.]+ GiB and 0\.00 GiB is free/m);
      assert.match(log, /^loading the model again on the 1 engine worker\(s\) started, with the cores meant for 3$/m);
      // The host ended the engine loaded as one of three and loaded it again: two loads, in one process.
      assert.equal(lines.filter((line) => /\[ficoco-host\] loaded on cpu/.test(line)).length, 2, log);
      assert.equal(new Set(lines.flatMap((line) => /engine process (\d+) started/.exec(line)?.[1] ?? [])).size, 1, log);
    } finally {
      pool.dispose();
    }
  });

  test('served off this machine, it says that http carries the key and the screenshots unencrypted', async () => {
    const open = await startServe('--host', '0.0.0.0', '--api-key', 'sk-test-key', '--method', 'none');
    try {
      assert.ok(
        open.log.some((line) =>
          /plain http: the API key, questions, screenshots and answers cross the network/.test(line),
        ),
        open.log.join('\n'),
      );
    } finally {
      await open.close();
    }
  });

  test('an API key is required off this machine; with one, requests without it get 401', async () => {
    await assert.rejects(
      runCli(['serve', '--host', '0.0.0.0'], { ...process.env, FICOCO_API_KEY: '' }),
      (error: { code: number; stderr: string }) => {
        assert.equal(error.code, 2);
        assert.match(error.stderr, /--host 0\.0\.0\.0 opens the engine to the network; give --api-key KEY/);
        return true;
      },
    );
    const server = await startServe('--api-key', 'sk-test-key', '--max-body-mb', '1', '--method', 'none');
    try {
      const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
      await assert.rejects(wrong.models.list(), (error) => error instanceof OpenAI.AuthenticationError);
      assert.equal((await fetch(`${server.url}/metrics`)).status, 401);
      // The key goes by the route matched: a percent-encoded path or a query reaches the same route, and needs it too.
      for (const disguised of ['/%761/models', '/metrics?x=1', '/%6detrics', '/v1/models/', '/nowhere'])
        assert.equal((await fetch(`${server.url}${disguised}`)).status, 401, disguised);
      assert.equal((await fetch(`${server.url}/health`)).status, 200, 'probes need no key');
      assert.equal((await fetch(`${server.url}/health?probe=1`)).status, 200, 'probes need no key');
      const right = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-test-key', maxRetries: 0 });
      // The scheme's name goes in any case, as HTTP has it; the key itself must match exactly.
      for (const [authorization, status] of [
        ['bearer sk-test-key', 200],
        ['BEARER  sk-test-key', 200],
        ['Bearer SK-TEST-KEY', 401],
        ['Basic sk-test-key', 401],
        ['sk-test-key', 401],
      ] as const)
        assert.equal(
          (await fetch(`${server.url}/v1/models`, { headers: { authorization } })).status,
          status,
          authorization,
        );
      assert.equal((await right.models.list()).data.length, 1);
      // With a key, any host name will do (a proxy may pass on its own): the key is what keeps others out.
      const proxied = await requestWithHost(`${server.url}/v1/models`, 'ficoco.example', 'sk-test-key');
      assert.equal(proxied.status, 200);
      await assert.rejects(
        wrong.chat.completions.create({ model: 'tiny-llava-screens', messages: imageQuestion(dataUrl(IMAGE)) }),
        (error) => error instanceof OpenAI.AuthenticationError,
      );
      const large = `data:image/png;base64,${Buffer.alloc(1_200_000).toString('base64')}`;
      await assert.rejects(
        right.chat.completions.create({ model: 'tiny-llava-screens', messages: imageQuestion(large) }),
        (error: InstanceType<typeof OpenAI.APIError>) => {
          assert.equal(error.status, 413, String(error));
          assert.equal(error.code, 'request_too_large');
          return true;
        },
      );
      // The 413 waits for the rest of the body: an answer (and the close after it) while the client still sends can
      // reach it as a reset instead.
      assert.deepEqual(await slowOversizedPost(`${server.url}/v1/chat/completions`, 'sk-test-key'), {
        status: 413,
        afterBody: true,
      });
      // Refused before the engine, each still counted once.
      const counts = await requestCounts(server.url, 'sk-test-key');
      assert.deepEqual([counts[401], counts[413]], [1, 2]);
    } finally {
      await server.close();
    }
  });

  test('a full queue refuses before reading the body; a body still arriving holds its place', async () => {
    const { pool, app, admitted } = endlessServer({ maxTokens: 2, requestTimeoutMs: 10_000 });
    let free: (() => void) | undefined;
    let slow: ReturnType<typeof halfThenRest> | undefined;
    try {
      await pool.start();
      const url = `${await app.listen({ host: '127.0.0.1', port: 0 })}/v1/chat/completions`;
      const png = `data:image/png;base64,${screenshotPng(64, 48).toString('base64')}`;
      const body = (image: string) =>
        JSON.stringify({ model: 'endless', messages: imageQuestion(image, 'go on'), max_tokens: 2 });
      // The one worker is busy as with another client's long answer.
      const busy = pool.run(new AbortController().signal, () => new Promise<void>((resolve) => (free = resolve)));
      // A client sends half its body: it holds the one place in the queue while the rest arrives.
      slow = halfThenRest(url, body(png));
      await admitted(slow.answer);
      // Refused before its body is read: its image, not one, is never decoded (that would answer 400).
      const refused = await post(url, body('data:image/png;base64,AAAA'));
      assert.equal(refused.status, 429, refused.body);
      assert.equal(JSON.parse(refused.body).error.code, 'queue_full');
      assert.match(refused.retryAfter ?? '', /^\d+$/);
      slow.sendRest();
      free!();
      await busy;
      const answered = await slow.answer;
      assert.equal(answered.status, 200, answered.body);
      // Its place was given back once: the queue takes one request again while the worker is busy, and no more.
      const busyAgain = pool.run(new AbortController().signal, () => new Promise<void>((resolve) => (free = resolve)));
      const queued = post(url, body(png));
      await admitted(queued);
      const beyond = await post(url, body(png));
      assert.equal(beyond.status, 429, beyond.body);
      free!();
      await busyAgain;
      assert.equal((await queued).status, 200);
    } finally {
      free?.();
      slow?.request.destroy();
      await app.close();
    }
  });

  test('a body that falls behind gets a 408 and gives its queue place back at once', async () => {
    const { pool, app } = endlessServer({ maxTokens: 2, requestTimeoutMs: 10_000, bodyGraceMs: 300 });
    let free: (() => void) | undefined;
    try {
      await pool.start();
      const url = await app.listen({ host: '127.0.0.1', port: 0 });
      // The one worker is busy as with another client's long answer: the trickled request takes the one queue place.
      const busy = pool.run(new AbortController().signal, () => new Promise<void>((resolve) => (free = resolve)));
      // A byte every 100 ms falls behind 1 Mbit/s at once: cut off after the grace, long before the request timeout.
      const trickled = await trickledPost(`${url}/v1/chat/completions`, 5000);
      assert.equal(trickled.status, 408, trickled.body);
      assert.deepEqual(JSON.parse(trickled.body), {
        error: {
          message:
            "The request body arrived slower than 1 Mbit/s (more than 0.3 s behind); check the client's connection.",
          type: 'invalid_request_error',
          param: null,
          code: 'request_timeout',
        },
      });
      // The place is free while the worker is still busy: another request could wait in the queue.
      pool.admit()();
      free!();
      await busy;
    } finally {
      free?.();
      await app.close();
    }
  });

  test('a stream that waits for a worker opens at once and stays alive with comments until its answer', async () => {
    // A client bounds its wait for response headers (Node's fetch: 300 s); a long queue must not look like a hang.
    const { pool, app } = endlessServer({ maxTokens: 4, requestTimeoutMs: 10_000, keepAliveMs: 50 });
    let free: (() => void) | undefined;
    try {
      await pool.start();
      const url = `${await app.listen({ host: '127.0.0.1', port: 0 })}/v1/chat/completions`;
      // The one worker is busy as with another client's long answer, until the test frees it.
      const busy = pool.run(new AbortController().signal, () => new Promise<void>((resolve) => (free = resolve)));
      const messages = imageQuestion(`data:image/png;base64,${screenshotPng(64, 48).toString('base64')}`, 'go on');
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'endless', messages, max_tokens: 4, stream: true }),
        // The worker stays busy until the test frees it: headers sent only when the request starts never come.
        signal: AbortSignal.timeout(15_000),
      });
      assert.equal(pool.queueDepth, 1, 'the headers came while the request waited');
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let received = '';
      while ((received.match(/^:[^\n]*\n\n/gm) ?? []).length < 3) received += (await reader.read()).value ?? '';
      assert.doesNotMatch(received, /^data:/m, 'nothing but comments before the answer');
      free!();
      await busy;
      for (let piece = await reader.read(); !piece.done; piece = await reader.read()) received += piece.value;
      assert.match(received, /"finish_reason":"length"/);
      assert.match(received, /data: \[DONE\]\n\n$/);
    } finally {
      free?.();
      await app.close();
    }
  });

  test('a request must arrive within the request timeout; the answer after it may take longer', async () => {
    const { pool, app } = endlessServer({ maxTokens: 16, requestTimeoutMs: 500 });
    try {
      await pool.start();
      const url = await app.listen({ host: '127.0.0.1', port: 0 });
      // A body trickled a byte at a time is cut off once the limit is past, not read forever.
      const trickled = await trickledPost(`${url}/v1/chat/completions`, 5000);
      assert.equal(trickled.status, 408);
      assert.ok(trickled.ms < 3000, `cut after ${trickled.ms} ms`);
      // As OpenAI's clients read an error: its message, type and code.
      assert.deepEqual(JSON.parse(trickled.body), {
        error: {
          message: 'The request did not arrive within 0.5 s.',
          type: 'invalid_request_error',
          param: null,
          code: 'request_timeout',
        },
      });
      // Bytes that are not HTTP get a 400 in the same form.
      const notHttp = await rawExchange(url, 'HELLO THERE\r\n\r\n');
      assert.match(notHttp, /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.equal(JSON.parse(notHttp.split('\r\n\r\n')[1]!).error.code, 'bad_request');
      const bigHeaders = await rawExchange(
        url,
        `GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'x'.repeat(20_000)}\r\n\r\n`,
      );
      assert.match(bigHeaders, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
      assert.equal(JSON.parse(bigHeaders.split('\r\n\r\n')[1]!).error.code, 'request_header_fields_too_large');
      // A request that arrived in time is answered past the limit: here it waits for the one worker, busy for 1.5 s
      // as with another client's long answer, then streams.
      const started = performance.now();
      const busy = pool.run(new AbortController().signal, () => sleep(1500));
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const messages = imageQuestion(`data:image/png;base64,${screenshotPng(64, 48).toString('base64')}`, 'go on');
      const stream = await client.chat.completions.create({ model: 'endless', messages, max_tokens: 8, stream: true });
      let finish: string | null = null;
      for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
      assert.equal(finish, 'length');
      assert.ok(performance.now() - started > 1500, `answered in ${performance.now() - started} ms`);
      await busy;
    } finally {
      await app.close();
    }
  });
});

/** Requests `url` with `host` as its Host header (and the key, if given); resolves with the status and the body. */
function requestWithHost(url: string, host: string, apiKey?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = { host, ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) };
    const request = http.request(
      url,
      { headers, method: url.endsWith('/completions') ? 'POST' : 'GET' },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    request.on('error', reject);
    request.end();
  });
}

/** POSTs `body` as JSON; resolves with the status, the body and Retry-After. */
function post(url: string, body: string): Promise<{ status: number; body: string; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: 'POST', headers: { 'content-type': 'application/json' } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: text, retryAfter: response.headers['retry-after'] }),
        );
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** POSTs the first half of `body` now and the rest when asked; `answer` settles with the response. */
function halfThenRest(url: string, body: string) {
  const bytes = Buffer.from(body);
  const half = Math.floor(bytes.length / 2);
  let request!: http.ClientRequest;
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    request = http.request(
      url,
      { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': bytes.length } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
      },
    );
    request.on('error', reject);
  });
  // A test that fails destroys the request: its answer is then not awaited.
  answer.catch(() => undefined);
  request.write(bytes.subarray(0, half));
  return { answer, request, sendRest: () => request.end(bytes.subarray(half)) };
}

/** `ficoco_requests_total` from /metrics, by status. */
async function requestCounts(url: string, apiKey?: string): Promise<Record<string, number>> {
  const headers = apiKey ? { authorization: `Bearer ${apiKey}` } : undefined;
  const text = await (await fetch(`${url}/metrics`, { headers })).text();
  const counts = [...text.matchAll(/^ficoco_requests_total\{status="(\d+)"\} (\d+)$/gm)];
  return Object.fromEntries(counts.map(([, status, count]) => [status, Number(count)]));
}

/** Sends `bytes` over a plain socket to the server at `url`; resolves with everything it answers. */
function rawExchange(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = net.connect(Number(port), hostname, () => socket.write(bytes));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

/**
 * POSTs a body of 1000 bytes, one every 100 ms, for at most `mostMs`; resolves with the status it got (0 for none) and
 * when the connection ended.
 */
function trickledPost(url: string, mostMs: number): Promise<{ status: number; ms: number; body: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    let status = 0;
    let body = '';
    const request = http.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': 1000 },
    });
    request.on('response', (response) => {
      status = response.statusCode ?? 0;
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
    });
    const timer = setInterval(() => request.write(' '), 100);
    const deadline = setTimeout(() => request.destroy(), mostMs);
    request.on('error', () => undefined);
    request.on('close', () => {
      clearInterval(timer);
      clearTimeout(deadline);
      resolve({ status, ms: performance.now() - started, body });
    });
    request.write('{');
  });
}

/**
 * POSTs 3 MiB (over a 1 MiB limit) in two writes 300 ms apart; settles once the request is over with its status,
 * whether the answer came after the whole body was sent, and the error the request met, if any.
 */
function slowOversizedPost(
  url: string,
  apiKey: string,
): Promise<{ status?: number; afterBody?: boolean; error?: string }> {
  const body = Buffer.alloc(3 * 2 ** 20, 0x20);
  return new Promise((resolve) => {
    const outcome: { status?: number; afterBody?: boolean; error?: string } = {};
    const request = http.request(
      url,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${apiKey}`,
          'content-type': 'application/json',
          'content-length': body.length,
        },
      },
      (response) => {
        outcome.status = response.statusCode;
        outcome.afterBody = request.writableFinished;
        response.resume();
      },
    );
    request.on('error', (error: NodeJS.ErrnoException) => (outcome.error = error.code ?? error.message));
    request.on('close', () => resolve(outcome));
    request.write(body.subarray(0, 2 ** 19));
    setTimeout(() => request.end(body.subarray(2 ** 19)), 300);
  });
}
