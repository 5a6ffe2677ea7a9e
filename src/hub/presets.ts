/**
 * The models FiCoCo offers by name. Each Hub preset pins a commit and lists the files it needs, so what is
 * downloaded is exactly what was checked; sizes are the Hub's listing, rounded (the download plan has the bytes).
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
  /** absent for the built-in model, which ships inside the extension */
  hub?: { repo: string; revision: string; files: readonly string[] };
}

const GB = 1e9;

const LLAVA_HF_FILES = [
  'config.json',
  'generation_config.json',
  'preprocessor_config.json',
  'chat_template.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'model.safetensors.index.json',
];

const shards = (count: number) =>
  Array.from(
    { length: count },
    (_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`,
  );

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
        'model.safetensors.index.json',
        ...shards(2),
      ],
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
