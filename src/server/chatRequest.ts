/**
 * OpenAI Chat Completions requests: the JSON schema Fastify validates every body against, and the translation of a
 * valid body into one engine question. Images come only as `data:` URLs; the server fetches nothing.
 */
import { randomInt } from 'node:crypto';
import type { FromSchema } from 'json-schema-to-ts';
import { parseBudget, BUDGET_HINT, type ParamValue } from '../common/budget';
import { MAX_IMAGES_PER_QUESTION, checkImageFile } from '../common/imageFile';
import { AUTO_METHOD, NO_REDUCTION, type ReductionRequest } from '../common/reductionChoice';
import { MAX_NEW_TOKENS_LIMIT, MAX_SEED, type AskParams, type HistoryMessage } from '../protocol/engine';
import { findMethod } from '../reduction/registry';

const TEXT_PART = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' } },
} as const;

const IMAGE_PART = {
  type: 'object',
  required: ['type', 'image_url'],
  properties: {
    type: { const: 'image_url' },
    image_url: {
      type: ['string', 'object'],
      required: ['url'],
      properties: { url: { type: 'string' }, detail: { type: 'string' } },
    },
  },
} as const;

/**
 * A content part. The discriminator picks the branch by `type`, and Ajv checks it after `required` and `properties`:
 * an unsupported type is one error naming the types supported, not one per branch.
 */
const CONTENT_PART = {
  type: 'object',
  required: ['type'],
  properties: { type: { enum: [TEXT_PART.properties.type.const, IMAGE_PART.properties.type.const] } },
  discriminator: { propertyName: 'type' },
  oneOf: [TEXT_PART, IMAGE_PART],
} as const;

// Type lists rather than anyOf here and below: a refusal is then one schema error, which says what is wrong.
const MESSAGE = {
  type: 'object',
  required: ['role'],
  properties: {
    role: { enum: ['system', 'developer', 'user', 'assistant'] },
    content: { type: ['string', 'null', 'array'], maxItems: 64, items: CONTENT_PART },
    name: { type: 'string' },
  },
} as const;

/** The body of POST /v1/chat/completions; fields OpenAI defines that FiCoCo does not use are accepted and ignored. */
export const CHAT_COMPLETION_BODY = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    model: { type: 'string', minLength: 1, maxLength: 512 },
    messages: { type: 'array', minItems: 1, maxItems: 512, items: MESSAGE },
    stream: { type: ['boolean', 'null'] },
    stream_options: { type: ['object', 'null'], properties: { include_usage: { type: 'boolean' } } },
    max_tokens: { type: ['integer', 'null'], minimum: 1 },
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
    top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
    seed: { type: ['integer', 'null'] },
    // Not OpenAI's: vLLM's, llama.cpp's and Ollama's, which clients send as extra fields.
    top_k: { type: ['integer', 'null'], minimum: 0, maximum: 2147483647 },
    min_p: { type: ['number', 'null'], minimum: 0, maximum: 1 },
    repetition_penalty: { type: ['number', 'null'], exclusiveMinimum: 0 },
    stop: {
      type: ['string', 'array', 'null'],
      maxLength: 1024,
      maxItems: 4,
      items: { type: 'string', maxLength: 1024 },
    },
    // Read only to refuse what FiCoCo cannot honour (unsupportedFields). OpenAI's other fields (user, metadata,
    // service_tier, parallel_tool_calls, prediction, prompt caching…) change nothing in an answer and are ignored.
    n: { type: ['integer', 'null'], minimum: 1 },
    frequency_penalty: { type: ['number', 'null'] },
    presence_penalty: { type: ['number', 'null'] },
    logit_bias: { type: ['object', 'null'] },
    logprobs: { type: ['boolean', 'null'] },
    top_logprobs: { type: ['integer', 'null'] },
    response_format: { type: ['object', 'null'], properties: { type: { type: 'string' } } },
    modalities: { type: ['array', 'null'], items: { type: 'string' } },
    audio: { type: ['object', 'null'] },
    tools: { type: ['array', 'null'] },
    tool_choice: { type: ['string', 'object', 'null'] },
    functions: { type: ['array', 'null'] },
    function_call: { type: ['string', 'object', 'null'] },
    web_search_options: { type: ['object', 'null'] },
    reasoning_effort: { type: ['string', 'null'] },
    verbosity: { type: ['string', 'null'] },
    store: { type: ['boolean', 'null'] },
    moderation: { type: ['object', 'null'] },
    ficoco: {
      type: 'object',
      additionalProperties: false,
      properties: {
        method: { type: 'string', minLength: 1 },
        budget: { type: ['string', 'number'] },
        params: { type: 'object', additionalProperties: { type: ['number', 'string', 'boolean'] } },
        progress: { type: 'boolean' },
      },
    },
  },
} as const;

export type ChatCompletionBody = FromSchema<typeof CHAT_COMPLETION_BODY>;

/** A request that is valid JSON for the schema but cannot be answered as asked: a 400 with this message. */
export class BadChatRequest extends Error {
  constructor(
    message: string,
    /** the request field at fault, as OpenAI's `param` */
    readonly param: string,
  ) {
    super(message);
    this.name = 'BadChatRequest';
  }
}

export interface ChatQuestion {
  ask: Omit<AskParams, 'requestId'>;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  /** a stream carries the prefill's progress before the answer (`ficoco.progress`) */
  progress: boolean;
}

export interface ServerDefaults {
  /** the reduction when a request names none: the model's recommendation unless `ficoco serve` was told otherwise */
  reduction: ReductionRequest | undefined;
  maxTokens: number;
}

type Message = ChatCompletionBody['messages'][number];

/**
 * One engine question from a chat: the last message is the question, the earlier ones its text history, and the
 * images of every user message go with the question (clients resend a conversation's image with each follow-up).
 */
export function chatQuestion(body: ChatCompletionBody, defaults: ServerDefaults): ChatQuestion {
  const last = body.messages[body.messages.length - 1];
  if (last.role !== 'user')
    throw new BadChatRequest(`The last message is the ${last.role}'s; it must be the user's question.`, 'messages');
  // Counted before any is decoded: each may be megabytes.
  const imageCount = body.messages.reduce(
    (count, message) =>
      count +
      (message.role === 'user' && Array.isArray(message.content)
        ? message.content.filter((part) => part.type === 'image_url').length
        : 0),
    0,
  );
  if (imageCount > MAX_IMAGES_PER_QUESTION)
    throw new BadChatRequest(
      `The conversation carries ${imageCount} images; FiCoCo takes at most ${MAX_IMAGES_PER_QUESTION} per question.`,
      'messages',
    );
  const images = body.messages.flatMap((message, i) => (message.role === 'user' ? imagesOf(message, i) : []));
  const history: HistoryMessage[] = body.messages.slice(0, -1).map((message) => ({
    role: message.role === 'developer' ? 'system' : message.role,
    text: textOf(message),
  }));
  unsupportedFields(body);
  const maxTokensField = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? defaults.maxTokens;
  if (maxTokens > MAX_NEW_TOKENS_LIMIT)
    throw new BadChatRequest(
      `${maxTokensField} is ${maxTokens}; FiCoCo answers with at most ${MAX_NEW_TOKENS_LIMIT}.`,
      maxTokensField,
    );
  const reduction = body.ficoco ? reductionOf(body.ficoco, defaults) : defaults.reduction;
  return {
    ask: {
      question: questionOf(last),
      images,
      history,
      ...(reduction ? { reduction } : {}),
      maxNewTokens: maxTokens,
      // Greedy unless asked: the answer to a question about a screenshot should not change from run to run.
      temperature: body.temperature ?? 0,
      topP: body.top_p ?? 1,
      // Without a seed each sampled answer draws its own, as OpenAI's do: asked again (Regenerate), it may differ.
      seed: body.seed != null ? body.seed >>> 0 : randomInt(MAX_SEED + 1),
      ...(body.top_k != null ? { topK: body.top_k } : {}),
      ...(body.min_p != null ? { minP: body.min_p } : {}),
      ...(body.repetition_penalty != null ? { repetitionPenalty: body.repetition_penalty } : {}),
    },
    // An empty stop string would end every answer before it began: clients send "" for none.
    stop: (body.stop === undefined || body.stop === null
      ? []
      : typeof body.stop === 'string'
        ? [body.stop]
        : body.stop
    ).filter((stop) => stop !== ''),
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
    progress: body.stream === true && body.ficoco?.progress === true,
  };
}

/**
 * Refuses what FiCoCo cannot honour unless it asks for nothing, at the value clients send by default: a client must
 * not be told a penalty, a tool call or a JSON answer was applied when it was not.
 */
function unsupportedFields(body: ChatCompletionBody): void {
  const noPenalty = 'FiCoCo penalizes repeats only with repetition_penalty; leave it out or send 0';
  neutralOnly(body, 'n', (n) => n === 1, 'FiCoCo answers with one choice; leave it out or send 1');
  neutralOnly(body, 'frequency_penalty', (penalty) => penalty === 0, noPenalty);
  neutralOnly(body, 'presence_penalty', (penalty) => penalty === 0, noPenalty);
  neutralOnly(
    body,
    'logit_bias',
    (bias) => Object.keys(bias).length === 0,
    'FiCoCo biases no tokens; leave it out or send {}',
  );
  neutralOnly(body, 'logprobs', (wanted) => !wanted, 'FiCoCo returns no log probabilities; leave it out or send false');
  neutralOnly(
    body,
    'top_logprobs',
    (count) => count === 0,
    'FiCoCo returns no log probabilities; leave it out or send 0',
  );
  neutralOnly(
    body,
    'response_format',
    (format) => format.type === undefined || format.type === 'text',
    'FiCoCo answers in free text; leave it out',
  );
  neutralOnly(
    body,
    'modalities',
    (kinds) => kinds.every((kind) => kind === 'text'),
    'FiCoCo answers in text; leave it out or send ["text"]',
  );
  neutralOnly(body, 'audio', () => false, 'FiCoCo answers in text, not audio; leave it out');
  // Tools the model may leave unused are a question it answers in text, as a model that chose no tool does.
  const noToolCall = 'FiCoCo answers in text and calls no tools; send "auto" or "none", or leave it out';
  neutralOnly(body, 'tool_choice', (choice) => choice === 'auto' || choice === 'none', noToolCall);
  neutralOnly(body, 'function_call', (choice) => choice === 'auto' || choice === 'none', noToolCall);
  neutralOnly(body, 'web_search_options', () => false, 'FiCoCo searches nothing; leave it out');
  neutralOnly(
    body,
    'reasoning_effort',
    (effort) => effort === 'none',
    'FiCoCo answers without reasoning first; leave it out or send "none"',
  );
  neutralOnly(
    body,
    'verbosity',
    (verbosity) => verbosity === 'medium',
    'FiCoCo does not steer how long an answer is (max_tokens bounds it); leave it out or send "medium"',
  );
  neutralOnly(body, 'store', (stored) => !stored, 'FiCoCo stores no completions; leave it out or send false');
  neutralOnly(body, 'moderation', () => false, 'FiCoCo moderates nothing; leave it out');
}

/** A 400 naming `field` unless it is absent, null or a value `isNeutral` takes as asking for nothing. */
function neutralOnly<Field extends keyof ChatCompletionBody & string>(
  body: ChatCompletionBody,
  field: Field,
  isNeutral: (value: NonNullable<ChatCompletionBody[Field]>) => boolean,
  refusal: string,
): void {
  const value = body[field];
  if (value !== undefined && value !== null && !isNeutral(value))
    throw new BadChatRequest(`${field} is not supported: ${refusal}.`, field);
}

/**
 * What an image sent without words asks. OpenAI-style clients send an image alone for "what is this?", and their
 * models describe it; the engine itself wants words, so the server says them.
 */
export const IMAGE_ALONE_QUESTION = 'Describe this image.';

/** The last user message's text, or IMAGE_ALONE_QUESTION where it holds an image and no words. */
function questionOf(message: Message): string {
  const text = textOf(message);
  const hasImage = Array.isArray(message.content) && message.content.some((part) => part.type === 'image_url');
  return hasImage && text.trim() === '' ? IMAGE_ALONE_QUESTION : text;
}

function textOf(message: Message): string {
  const { content } = message;
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  return content.flatMap((part) => (part.type === 'text' ? [part.text] : [])).join('\n');
}

function imagesOf(message: Message, index: number): AskParams['images'] {
  if (!Array.isArray(message.content)) return [];
  return message.content.flatMap((part, j) => {
    if (part.type !== 'image_url') return [];
    const url = typeof part.image_url === 'string' ? part.image_url : part.image_url.url;
    const field = `messages[${index}].content[${j}].image_url`;
    if (/^https?:/i.test(url))
      throw new BadChatRequest(
        `${field} is a web address; FiCoCo fetches nothing: send the image itself as a data: URL ` +
          `(data:image/png;base64,…).`,
        field,
      );
    const { mediaType, dataBase64 } = imageDataUrl(url, field);
    const name = `message-${index}-part-${j}.${mediaType.slice('image/'.length).replace(/[^a-z0-9]/g, '')}`;
    // Header, size and pixel count checked here: a bad image is refused before it waits for an engine worker.
    checkImageFile(Buffer.from(dataBase64, 'base64'), name);
    return [{ name, dataBase64 }];
  });
}

/** `data:` and a media type with at most a few parameters, then `,`: the header's length is bounded. */
const DATA_URL_HEADER = /^data:([^,;]{0,128})((?:;[^,;]{0,128}){0,8}),/i;

/**
 * An image's media type and base64 from a `data:image/…;base64,…` URL, in time linear in its length (a general URL
 * parser spends seconds on a 20 MB one, and a data-URL header pattern can take quadratic time on a hostile one).
 */
function imageDataUrl(url: string, field: string): { mediaType: string; dataBase64: string } {
  const header = DATA_URL_HEADER.exec(url);
  if (!header) throw new BadChatRequest(`${field} is not a data: URL; send data:image/png;base64,… .`, field);
  const mediaType = header[1].trim().toLowerCase();
  if (!/^image\/[a-z0-9.+-]+$/.test(mediaType))
    throw new BadChatRequest(`${field} is ${mediaType || 'text/plain'}, not an image.`, field);
  if (!header[2].split(';').some((parameter) => parameter.trim().toLowerCase() === 'base64'))
    throw new BadChatRequest(`${field} is not base64-encoded; send data:image/png;base64,… .`, field);
  const data = url.slice(header[0].length);
  // Padding may be left out (data: URLs allow it); the engine takes whole groups of four characters.
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(data) || data.length % 4 === 1)
    throw new BadChatRequest(`${field}: its data is not base64 (A–Z, a–z, 0–9, +, / and = at the end).`, field);
  return { mediaType, dataBase64: data.padEnd(Math.ceil(data.length / 4) * 4, '=') };
}

function reductionOf(
  field: NonNullable<ChatCompletionBody['ficoco']>,
  defaults: ServerDefaults,
): ReductionRequest | undefined {
  const { method } = field;
  // Empty params are none: the extension sends `params: {}` with every method.
  const hasParams = Object.keys(field.params ?? {}).length > 0;
  if (method === undefined) {
    // The field may carry only options (`progress`): the server's reduction stands.
    if (field.budget !== undefined || hasParams)
      throw new BadChatRequest('ficoco.budget and ficoco.params need ficoco.method.', 'ficoco.method');
    return defaults.reduction;
  }
  if (method === NO_REDUCTION || method === AUTO_METHOD) {
    // A budget or params here would be dropped unread, as a misspelt field would.
    if (field.budget !== undefined || hasParams)
      throw new BadChatRequest(
        `ficoco.method ${method} takes no budget or params: ${method === AUTO_METHOD ? 'auto chooses its own' : 'nothing is reduced'}.`,
        field.budget !== undefined ? 'ficoco.budget' : 'ficoco.params',
      );
    return method === NO_REDUCTION ? undefined : { method, params: {} };
  }
  // A misspelt name is said first, as `--method` does: asking for a budget it would not use sends the user the wrong way.
  findMethod(method);
  const params = (field.params ?? {}) as Record<string, ParamValue>;
  if (field.budget === undefined)
    throw new BadChatRequest(
      `ficoco.budget is required with ficoco.method ${method}: ${BUDGET_HINT}.`,
      'ficoco.budget',
    );
  const budget = parseBudget(String(field.budget));
  if (!budget) throw new BadChatRequest(`ficoco.budget is ${field.budget}; expected ${BUDGET_HINT}.`, 'ficoco.budget');
  return { method, budget, params };
}
