import fs from 'node:fs';
import path from 'node:path';
import { FicocoError } from '../../common/errors';
import { isJsonObject, readModelText, readOptionalJson, type JsonObject } from './json-file';
import { DEFAULT_RENDER_LIMITS, TemplateProcess, type RenderLimits } from './template-process';

export type ChatContent = string | Array<{ type: 'text'; text: string } | { type: 'image' }>;

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: ChatContent;
}

/** A conversation with more text than any prompt may hold. */
export class PromptTooLongError extends FicocoError {
  constructor(characters: number, most: number) {
    super(
      `The conversation holds ${characters} characters of text, more than the ${most} a prompt may have; ask a ` +
        'shorter question, or in a new chat.',
      'input',
    );
  }
}

const textLength = (content: ChatContent) =>
  typeof content === 'string'
    ? content.length
    : content.reduce((sum, part) => sum + (part.type === 'text' ? part.text.length : 0), 0);

/** Token strings transformers hands to every chat template. */
export interface TemplateTokens {
  bos_token?: string;
  eos_token?: string;
  pad_token?: string;
  unk_token?: string;
}

/**
 * A model's Jinja chat template. Model folders are untrusted, so it is parsed and rendered in a child process with a
 * time, memory and output limit (template-process.ts); `check` parses it there, so a broken template is refused at load.
 */
export class ChatTemplate {
  private readonly renderer: TemplateProcess;
  private readonly maxOutputChars: number;

  constructor(
    source: string,
    /** the file it came from, for error messages */
    readonly origin: string,
    limits: Partial<RenderLimits> = {},
  ) {
    const all = { ...DEFAULT_RENDER_LIMITS, ...limits };
    this.renderer = new TemplateProcess(source, origin, all);
    this.maxOutputChars = all.maxOutputChars;
  }

  /**
   * Renders like transformers' apply_chat_template(messages, add_generation_prompt=True).
   * raise_exception is a built-in global of @huggingface/jinja (it may not be redeclared): it throws
   * with the template's message, which is why a template's own errors are reported as input errors;
   * a render that exceeds a limit is the model folder's fault (config).
   */
  render(messages: ChatMessage[], tokens: TemplateTokens): Promise<string> {
    // Text near the output limit would be blamed on the template, whose own words then tip it over: it is the
    // conversation that is too long. Half the limit is still far beyond any model's context.
    const characters = messages.reduce((sum, { content }) => sum + textLength(content), 0);
    const most = Math.floor(this.maxOutputChars / 2);
    if (characters > most) return Promise.reject(new PromptTooLongError(characters, most));
    return this.renderer.render({ ...tokens, messages, add_generation_prompt: true });
  }

  /** Parses the template in its process: a FicocoError (config) when it does not parse, or not in time. */
  check(): Promise<void> {
    return this.renderer.check();
  }

  /** Stops the rendering process. */
  dispose(): void {
    this.renderer.dispose();
  }
}

/**
 * Finds the chat template of a model folder. Processor-level files (chat_template.jinja, then
 * chat_template.json) win over tokenizer_config.json, as in transformers: for LLaVA they hold the
 * template that understands image content items.
 */
export function loadChatTemplate(modelDir: string, tokenizerConfig: JsonObject): ChatTemplate {
  const jinjaFile = path.join(modelDir, 'chat_template.jinja');
  if (fs.existsSync(jinjaFile)) return new ChatTemplate(readModelText(jinjaFile), jinjaFile);
  const chatTemplateJson = readOptionalJson(modelDir, 'chat_template.json');
  if (chatTemplateJson?.['chat_template'] !== undefined) {
    return pickTemplate(chatTemplateJson['chat_template'], path.join(modelDir, 'chat_template.json'));
  }
  if (tokenizerConfig['chat_template'] !== undefined) {
    return pickTemplate(tokenizerConfig['chat_template'], path.join(modelDir, 'tokenizer_config.json'));
  }
  throw new FicocoError(
    `${modelDir} has no chat template: expected chat_template in tokenizer_config.json, ` +
      `chat_template.json or chat_template.jinja.`,
    'model-folder',
  );
}

/** chat_template is a string, or a list of {name, template} of which "default" is used. */
function pickTemplate(value: unknown, origin: string): ChatTemplate {
  if (typeof value === 'string') return new ChatTemplate(value, origin);
  if (Array.isArray(value)) {
    const named = value.find((entry) => isJsonObject(entry) && entry['name'] === 'default');
    if (isJsonObject(named) && typeof named['template'] === 'string')
      return new ChatTemplate(named['template'], origin);
    throw new FicocoError(
      `chat_template in ${origin} is a list without a {"name": "default", "template": ...} entry; add one ` +
        `or keep a single template string.`,
      'config',
    );
  }
  throw new FicocoError(`chat_template in ${origin} must be a string or a list of {name, template}.`, 'config');
}
