/**
 * The models FiCoCo offers by name. Each Hub preset pins a commit and lists the files it needs, so what is
 * downloaded is exactly what was checked; sizes are the Hub's listing, rounded (the download plan has the bytes).
 * Files a folder can do without (chat_template.jinja where the template is in chat_template.json, …) may be listed
 * and absent.
 * The built-in model ships inside the package.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ModelPreset {
  id: string;
  title: string;
  /** what it is, in one line */
  description: string;
  licence: string;
  parameters: string;
  /** download size in bytes (rounded) */
  approxBytes: number;
  /** what a machine needs to run it usefully */
  hardware: string;
  /** how it sees a screenshot: tiled at its size (reads small text) or squashed to one square */
  screenshots: { highResolution: boolean; summary: string };
  /** the one to start with on a machine without a GPU */
  recommended?: true;
  /** absent for the built-in model, which ships inside the extension */
  hub?: { repo: string; revision: string; files: readonly string[] };
}

const GB = 1e9;

const LLAVA_HF_FILES = [
  'config.json',
  'generation_config.json',
  'preprocessor_config.json',
  'processor_config.json',
  'chat_template.json',
  'chat_template.jinja',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
];

/** Weights in `count` safetensors shards and their index. */
const shards = (count: number) => [
  'model.safetensors.index.json',
  ...Array.from(
    { length: count },
    (_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`,
  ),
];

export const MODEL_PRESETS: readonly ModelPreset[] = [
  {
    id: 'tiny-llava-screens',
    title: 'Built-in tiny LLaVA (screens)',
    description:
      'The 2 M-parameter model trained on synthetic screenshots that ships with FiCoCo; answers its ' +
      "evaluation set's question types, offline.",
    licence: 'MIT',
    parameters: '2.2 M',
    approxBytes: 4.4e6,
    hardware: 'Any machine; milliseconds per answer on a CPU.',
    screenshots: { highResolution: false, summary: 'one 168 × 168 view (144 tokens), trained for it' },
  },
  {
    id: 'tiny-llava-1.5b',
    title: 'TinyLLaVA 1.5B (TinyLlama + CLIP-L/336)',
    description:
      'TinyLLaVA v1 in the llava-hf layout: CLIP ViT-L/14 at 336 px (576 visual tokens) and ' +
      'TinyLlama-1.1B-Chat; the laptop-CPU choice.',
    licence: 'Apache-2.0',
    parameters: '1.4 B',
    approxBytes: 5.64 * GB,
    hardware: 'A laptop CPU with 8 GB of free memory (weights are float32); any GPU with 4 GB.',
    screenshots: { highResolution: false, summary: 'one 336 × 336 view (576 tokens): small text is lost' },
    hub: {
      repo: 'bczhou/tiny-llava-v1-hf',
      revision: 'fedff3e800a359a8795b962343a6449de4d39f6d',
      files: [
        'config.json',
        'generation_config.json',
        'preprocessor_config.json',
        'tokenizer.json',
        'tokenizer_config.json',
        'special_tokens_map.json',
        ...shards(2),
      ],
    },
  },
  {
    id: 'llava-onevision-0.5b',
    title: 'LLaVA-OneVision 0.5B (reads screenshots)',
    description:
      'llava-hf/llava-onevision-qwen2-0.5b-ov-hf: SigLIP-so400m/384 and Qwen2-0.5B; tiles a screenshot at its ' +
      'size (anyres_max_9), so the text of a 1080p window stays readable.',
    licence: 'Apache-2.0',
    parameters: '0.9 B',
    approxBytes: 1.8 * GB,
    hardware: 'A laptop CPU with 8 GB of free memory; a GPU with 4 GB.',
    screenshots: { highResolution: true, summary: 'tiles of 384 px up to 2304 × 2304 (1920 × 1080: 7,269 tokens)' },
    recommended: true,
    hub: {
      repo: 'llava-hf/llava-onevision-qwen2-0.5b-ov-hf',
      revision: '74dd0bf867a4cda7950c17663794267c60cf4b40',
      files: [...LLAVA_HF_FILES, 'model.safetensors'],
    },
  },
  {
    id: 'llava-next-mistral-7b',
    title: 'LLaVA-NeXT 7B (Mistral; reads screenshots)',
    description:
      'llava-hf/llava-v1.6-mistral-7b-hf: CLIP ViT-L/14-336 and Mistral-7B-Instruct-v0.2; cuts a screenshot ' +
      "into 336-px crops (up to 672 × 672 or 1008 × 336) plus the whole image: the FiCoCo paper's NeXT setting.",
    licence: 'Apache-2.0',
    parameters: '7.6 B',
    approxBytes: 15.14 * GB,
    hardware: 'A GPU with 16 GB (float16), or a CPU with 32 GB of memory (float32; slow); `int4` on a CPU.',
    screenshots: {
      highResolution: true,
      summary: 'up to 4 crops of 336 px plus the whole (1920 × 1080: 1,948 tokens)',
    },
    hub: {
      repo: 'llava-hf/llava-v1.6-mistral-7b-hf',
      revision: '2424fdd47412fccc66d91719126b420e9fbd7065',
      files: [...LLAVA_HF_FILES, ...shards(4)],
    },
  },
  {
    id: 'llava-1.5-7b',
    title: 'LLaVA-1.5 7B',
    description:
      "llava-hf/llava-1.5-7b-hf, the FiCoCo paper's model: CLIP ViT-L/14-336 and Vicuna-7B, 576 visual tokens.",
    licence: 'Llama 2 Community License',
    parameters: '7.1 B',
    approxBytes: 14.13 * GB,
    hardware: 'A GPU with 16 GB (float16), or a CPU with 32 GB of memory (float32; slow).',
    screenshots: { highResolution: false, summary: 'one 336 × 336 view (576 tokens): small text is lost' },
    hub: {
      repo: 'llava-hf/llava-1.5-7b-hf',
      revision: '95f2cf316249a98c11183f471ab76065c3e5f494',
      files: [...LLAVA_HF_FILES, ...shards(3)],
    },
  },
  {
    id: 'llava-1.5-13b',
    title: 'LLaVA-1.5 13B',
    description: "llava-hf/llava-1.5-13b-hf: CLIP ViT-L/14-336 and Vicuna-13B, the paper's larger model.",
    licence: 'Llama 2 Community License',
    parameters: '13.4 B',
    approxBytes: 26.69 * GB,
    hardware: 'A GPU with 32 GB (float16); CPU only with 64 GB of memory.',
    screenshots: { highResolution: false, summary: 'one 336 × 336 view (576 tokens): small text is lost' },
    hub: {
      repo: 'llava-hf/llava-1.5-13b-hf',
      revision: 'b78d95956335ef863df38fecb63d3615ac1a0e05',
      files: [...LLAVA_HF_FILES, ...shards(6)],
    },
  },
];

export function findPreset(id: string): ModelPreset | undefined {
  return MODEL_PRESETS.find((preset) => preset.id === id);
}

/** Where the built-in model sits inside the package (and the repository): models/tiny-llava-screens. */
export const BUILTIN_MODEL_PATH = ['models', 'tiny-llava-screens'] as const;

/**
 * The built-in model folder seen from a bundle or source folder (dist/, src/cli/, …): the first ancestor
 * that holds models/tiny-llava-screens/config.json, or undefined when the package has none.
 */
export function findBuiltinModel(fromDir: string): string | undefined {
  for (let dir = fromDir, depth = 0; depth < 4; dir = path.dirname(dir), depth++) {
    const candidate = path.join(dir, ...BUILTIN_MODEL_PATH);
    if (fs.existsSync(path.join(candidate, 'config.json'))) return candidate;
  }
  return undefined;
}
