import * as fs from 'node:fs';
import { FicocoError } from '../common/errors';
import { WeightIndex } from '../engine/weights/safetensors';
import { TensorToWrite, bytesOf, writeSafetensors } from '../engine/weights/safetensorsWriter';
import { cosineMatrix, softmax } from '../reduction/arrays';
import { StepRecord, runStep } from '../reduction/paradigm';
import { planReduction } from '../reduction/registry';
import { AttentionNeeds, SiteView, TokenState } from '../reduction/tokenState';
import { CommandOptions, budgetArg, integer, outputFileArg, paramArgs, parseCommandArgs } from './args';

export const REDUCE_USAGE = `Usage:
  ficoco reduce --method NAME --budget N --input IN.safetensors --output OUT.safetensors
                [--param name=value ...] [--vision-layers 23] [--text-layers 32]

Runs a method's steps on saved tensors (one site's tokens) and writes the reduced tokens with their
bookkeeping. Input: hidden_states [N, D]; visual_span [2] = (start, count); optional grid [2] = (rows,
cols) (default: a square span), class_token [1] (1 when token 0 is [CLS]), attention_logits [N, N] and/or
attention_probs [N, N] (head-averaged), keys [N, d] (head-averaged). Every step sees the saved attention
restricted to the tokens still present. Output: hidden_states, kept_indices (the input token each output
token continues), sizes, patch_owner (per patch: output token or −1), token_patch, visual_span, and per
step s: step<s>.sources, step<s>.receiver_offsets, step<s>.receivers (input indices; −1 = a new fused
token), step<s>.weights. The layer counts place a method's steps as on a model of that depth.
`;

export const REDUCE_OPTIONS = {
  method: { type: 'string' },
  budget: { type: 'string' },
  input: { type: 'string' },
  output: { type: 'string' },
  param: { type: 'string', multiple: true },
  'vision-layers': { type: 'string', default: '23' },
  'text-layers': { type: 'string', default: '32' },
  help: { type: 'boolean' },
} satisfies CommandOptions;

/** `ficoco reduce`: one method on saved tensors, for comparisons with other implementations and golden tests. */
export async function reduceCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs('reduce', { args, options: REDUCE_OPTIONS });
  if (values.help) {
    process.stdout.write(REDUCE_USAGE);
    return 0;
  }
  for (const flag of ['method', 'budget', 'input', 'output'] as const) {
    if (values[flag] === undefined)
      throw new FicocoError(`--${flag} is required (see \`ficoco reduce --help\`).`, 'input');
  }
  if (!fs.existsSync(values.input!)) throw new FicocoError(`${values.input} does not exist.`, 'input');
  if (!fs.statSync(values.input!).isFile()) throw new FicocoError(`${values.input} is not a file.`, 'input');
  outputFileArg('--output', values.output!);
  const saved = readSaved(values.input!, WeightIndex.openFile(values.input!));
  const { span } = saved;
  const plan = planReduction(
    values.method!,
    budgetArg(values.budget!),
    {
      visionLayers: integer('--vision-layers', values['vision-layers'], 1),
      textLayers: integer('--text-layers', values['text-layers'], 1),
      visualTokens: span.count,
      grid: saved.grid,
      hasClassToken: saved.hasClassToken,
    },
    paramArgs(values.param),
  );

  let state = saved.state;
  const outputs: TensorToWrite[] = [];
  plan.steps.forEach((step, s) => {
    const view = siteView(saved, state, step.site, step.needs);
    const log: StepRecord[] = [];
    state = runStep(step, view, log);
    const inputIndex = inputIndices(view);
    const original = (index: number) => (index < 0 ? -1 : inputIndex[index]);
    const { split, correlation } = log[0];
    outputs.push(
      integers(`step${s}.sources`, Array.from(split.sources, original)),
      integers(`step${s}.receiver_offsets`, Array.from(correlation.offsets)),
      integers(`step${s}.receivers`, Array.from(correlation.receivers, original)),
      floats(`step${s}.weights`, correlation.weights, [correlation.weights.length]),
    );
  });
  const outSpan = state.spans[0];
  writeSafetensors(
    values.output!,
    [
      floats('hidden_states', state.hidden, [state.count, state.width]),
      integers('kept_indices', Array.from(inputIndices(state))),
      floats('sizes', state.sizes, [state.count]),
      integers('patch_owner', Array.from(outSpan.patchOwner)),
      integers('token_patch', Array.from(outSpan.tokenPatch)),
      integers('visual_span', [outSpan.start, outSpan.count]),
      ...outputs,
    ],
    {
      method: plan.method.name,
      params: JSON.stringify(plan.params),
      kept: String(plan.keep),
      sites: plan.steps.map((step) => `${step.site}:${step.remove}`).join(','),
    },
  );
  process.stdout.write(
    `${plan.method.name}: ${span.count} → ${outSpan.count} visual tokens in ${plan.steps.length} ` +
      `step(s); wrote ${values.output}\n`,
  );
  return 0;
}

/**
 * Per token, the input token it continues: its position (which carries the input index through every step), or −1 for
 * a token a method created (EViT's fused token, SparseVLM's recycled ones: tokenPatch −1 in the span), whose position
 * is only borrowed from a token it was built from or sits beside.
 */
function inputIndices(state: TokenState): Int32Array {
  const indices = Int32Array.from(state.positions);
  for (const span of state.spans)
    span.tokenPatch.forEach((patch, t) => {
      if (patch < 0) indices[span.start + t] = -1;
    });
  return indices;
}

interface Saved {
  state: TokenState;
  span: { start: number; count: number };
  grid: { rows: number; cols: number };
  hasClassToken: boolean;
  logits?: Float32Array;
  probs?: Float32Array;
  keys?: Float32Array;
  count: number;
}

function readSaved(file: string, tensors: WeightIndex): Saved {
  // WeightIndex's own message for a missing tensor speaks of a model checkpoint and its config.json.
  for (const name of ['hidden_states', 'visual_span'])
    if (!tensors.has(name))
      throw new FicocoError(
        `${file} has no ${name} tensor; ficoco reduce reads hidden_states [N, D] and visual_span [2] (see \`ficoco reduce --help\`).`,
        'input',
      );
  const hidden = tensors.get('hidden_states');
  if (hidden.shape.length !== 2)
    throw new FicocoError(`hidden_states must be [tokens, width]; it is [${hidden.shape.join(', ')}].`, 'input');
  const [count, width] = hidden.shape;
  const [start, spanCount] = tensors.readIntegers('visual_span');
  if (!(start >= 0 && spanCount >= 1 && start + spanCount <= count))
    throw new FicocoError(`visual_span (${start}, ${spanCount}) does not fit ${count} tokens.`, 'input');
  const side = Math.round(Math.sqrt(spanCount));
  const [rows, cols] = tensors.has('grid') ? tensors.readIntegers('grid') : [side, side];
  if (rows * cols !== spanCount)
    throw new FicocoError(
      `grid ${rows}×${cols} does not hold the span's ${spanCount} tokens; give grid [rows, cols].`,
      'input',
    );
  const square = (name: string) => {
    if (!tensors.has(name)) return undefined;
    const values = tensors.readFloat32(name);
    if (values.length !== count * count) throw new FicocoError(`${name} must be [${count}, ${count}].`, 'input');
    return values;
  };
  const keys = tensors.has('keys') ? tensors.readFloat32('keys') : undefined;
  if (keys && keys.length % count !== 0) throw new FicocoError(`keys must be [${count}, head_dim].`, 'input');
  return {
    state: {
      hidden: tensors.readFloat32('hidden_states'),
      count,
      width,
      sizes: new Float32Array(count).fill(1),
      // Positions carry each token's input index through every step.
      positions: Int32Array.from({ length: count }, (_, i) => i),
      spans: [
        {
          start,
          count: spanCount,
          grid: { rows, cols },
          patchOwner: Int32Array.from({ length: spanCount }, (_, p) => start + p),
          tokenPatch: Int32Array.from({ length: spanCount }, (_, p) => p),
        },
      ],
    },
    span: { start, count: spanCount },
    grid: { rows, cols },
    hasClassToken: tensors.has('class_token') && tensors.readIntegers('class_token')[0] === 1,
    logits: square('attention_logits'),
    probs: square('attention_probs'),
    keys,
    count,
  };
}

/** The saved signals restricted to the tokens still present (each keeps its input row and column). */
function siteView(saved: Saved, state: TokenState, site: SiteView['site'], needs: AttentionNeeds): SiteView {
  const origin = state.positions;
  const view: SiteView = { ...state, site, keyCount: state.count, hasClassToken: saved.hasClassToken };
  if (needs.attention) {
    const source = needs.attention === 'probs' ? (saved.probs ?? saved.logits) : saved.logits;
    if (!source)
      throw new FicocoError(
        `${site} needs attention_${needs.attention} [${saved.count}, ${saved.count}] in the input.`,
        'input',
      );
    const restricted = new Float32Array(state.count * state.count);
    for (let i = 0; i < state.count; i++)
      for (let j = 0; j < state.count; j++)
        restricted[i * state.count + j] = source[origin[i] * saved.count + origin[j]];
    // Probabilities asked for but only logits saved: softmax each restricted row.
    if (needs.attention === 'probs' && !saved.probs) {
      for (let i = 0; i < state.count; i++)
        restricted.set(softmax(restricted.subarray(i * state.count, (i + 1) * state.count)), i * state.count);
    }
    view.attention = restricted;
  }
  if (needs.hiddenCosine) view.hiddenCosine = cosineMatrix(state.hidden, state.count, state.width);
  if (needs.keys || needs.keyCosine) {
    if (!saved.keys) throw new FicocoError(`${site} needs keys [${saved.count}, head_dim] in the input.`, 'input');
    const headDim = saved.keys.length / saved.count;
    const meanKeys = new Float32Array(state.count * headDim);
    for (let i = 0; i < state.count; i++)
      meanKeys.set(saved.keys.subarray(origin[i] * headDim, (origin[i] + 1) * headDim), i * headDim);
    if (needs.keys) view.meanKeys = meanKeys;
    if (needs.keyCosine) view.keyCosine = cosineMatrix(meanKeys, state.count, headDim);
  }
  return view;
}

function floats(name: string, values: Float32Array, shape: number[]): TensorToWrite {
  return { name, dtype: 'F32', shape, data: bytesOf(Float32Array.from(values)) };
}

function integers(name: string, values: number[]): TensorToWrite {
  return { name, dtype: 'I64', shape: [values.length], data: bytesOf(BigInt64Array.from(values, BigInt)) };
}
