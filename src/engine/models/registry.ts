/** Model families by config.json's model_type: a line per family. */
import type { FamilyModel, ModelFamily } from './family';
import { asObject, unsupported } from './fields';
import { llava } from './llava';
import { llavaNext, llavaOnevision } from './llavaNext';

const FAMILIES: Record<string, ModelFamily> = {
  llava,
  llava_next: llavaNext,
  llava_onevision: llavaOnevision,
};

/** The model a config.json describes, read by its family; `source` names the file in errors. */
export function parseModelConfig(json: unknown, source: string): FamilyModel {
  const root = asObject(json, source, 'the top level');
  const family =
    typeof root.model_type === 'string' && Object.hasOwn(FAMILIES, root.model_type)
      ? FAMILIES[root.model_type]
      : undefined;
  if (!family)
    throw unsupported(
      source,
      'model_type',
      root.model_type,
      Object.keys(FAMILIES),
      ' (LLaVA-style: a vision tower, an MLP projector, a Llama/Mistral/Qwen2 decoder)',
    );
  return family(root, source);
}
