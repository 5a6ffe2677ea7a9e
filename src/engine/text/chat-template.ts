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

  constructor(
    source: string,
    /** the file it came from, for error messages */
    readonly origin: string,
    limits: Partial<RenderLimits> = {},
  ) {
    this.renderer = new TemplateProcess(source, origin, { ...DEFAULT_RENDER_LIMITS, ...limits });
  }

  /**
   * Renders like transformers' apply_chat_template(messages, add_generation_prompt=True).
   * raise_exception is a built-in global of @huggingface/jinja (it may not be redeclared): it throws
   * with the template's message, which is why a template's own errors are reported as input errors;
   * a render that exceeds a limit is the model folder's fault (config).
   */
  render(messages: ChatMessage[], tokens: TemplateTokens): Promise<string> {
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
