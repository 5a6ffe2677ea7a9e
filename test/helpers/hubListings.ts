/**
 * Hub repositories as their real file listings have them, served (tools/fakeHub.ts) from a random-weight fixture:
 * the files a folder needs come from the fixture, the rest (ONNX exports, vocab.json, …) are small stand-ins that a
 * preset must not download.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const FIXTURES = path.join(__dirname, '..', 'fixtures');

/**
 * The chat template in llava-hf/llava-onevision-qwen2-0.5b-ov-hf's chat_template.json: images first, a space after
 * the role, no newline after <|im_end|>; `{% generation %}` marks the assistant's text for training masks.
 */
export const ONEVISION_CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}" +
  "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}" +
  "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}" +
  "{{ '<video>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}" +
  "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\\n' + content['text'] }}" +
  "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}" +
  "{% generation %}{{ '\\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface HubListing {
  /** the fixture whose files stand in for the model's */
  fixture: string;
  /** every file of the repository at the preset's commit */
  files: readonly string[];
  /** fields of config.json as the Hub's has them, over the fixture's */
  config: Record<string, unknown>;
  /** files whose content the fixture lacks, as the Hub has them */
  contents: Record<string, string>;
}

/**
 * llava-hf/llava-onevision-qwen2-0.5b-ov-hf at 74dd0bf867a4cda7950c17663794267c60cf4b40, as projects that pin that
 * commit list it (a `snapshot_download(allow_patterns=…)` of 13 files with their SHA-256s, and the Transformers.js
 * ONNX export beside them). Its config.json unties the embeddings at the top level and ties them in text_config:
 * the checkpoint has no lm_head.
 */
export const ONEVISION_05B_LISTING: HubListing = {
  fixture: 'tiny-llava-onevision-qwen2',
  files: [
    '.gitattributes',
    'README.md',
    'added_tokens.json',
    'chat_template.json',
    'config.json',
    'generation_config.json',
    'merges.txt',
    'model.safetensors',
    'onnx/decoder_model_merged_int8.onnx',
    'onnx/embed_tokens_int8.onnx',
    'onnx/vision_encoder.onnx',
    'onnx/vision_encoder_int8.onnx',
    'preprocessor_config.json',
    'processor_config.json',
    'special_tokens_map.json',
    'tokenizer.json',
    'tokenizer_config.json',
    'video_preprocessor_config.json',
    'vocab.json',
  ],
  config: { tie_word_embeddings: false },
  contents: { 'chat_template.json': JSON.stringify({ chat_template: ONEVISION_CHAT_TEMPLATE }) },
};

/** Writes `listing` into `target`: fixture files where the fixture has them, stand-ins elsewhere. */
export function writeHubListing(listing: HubListing, target: string): void {
  const fixture = path.join(FIXTURES, listing.fixture);
  for (const file of listing.files) {
    const destination = path.join(target, file);
    fs.mkdirSync(path.dirname(destination), { recursive: true });
    const source = path.join(fixture, file);
    if (file === 'config.json') {
      const config = JSON.parse(fs.readFileSync(source, 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(destination, JSON.stringify({ ...config, ...listing.config }, null, 2));
    } else if (listing.contents[file] !== undefined) fs.writeFileSync(destination, listing.contents[file]);
    else if (fs.existsSync(source)) fs.copyFileSync(source, destination);
    else fs.writeFileSync(destination, file.endsWith('.json') ? '{}\n' : `stand-in for ${file}\n`);
  }
}
