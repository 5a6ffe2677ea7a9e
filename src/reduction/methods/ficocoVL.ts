import { ParamSpec, defineMethod } from '../method';
import { Step } from '../paradigm';
import { FICOCO_L_PARAMS, ficocoLSteps } from './ficocoL';
import { FICOCO_V_PARAMS, ficocoVSteps } from './ficocoV';

const { start: visionStart, attention: visionAttention, schedule: visionSchedule, ...visionParams } = FICOCO_V_PARAMS;
const { start: llmStart, attention: llmAttention, schedule: llmSchedule, ...llmParams } = FICOCO_L_PARAMS;

const PARAMS = {
  visionShare: {
    type: 'number',
    default: 0.5,
    min: 0,
    max: 1,
    description:
      'Share of the reduction (on a log scale) done in the vision encoder: it keeps ' +
      'round(N^(1−share)·B^share) of N tokens, the decoder goes on to the budget B (0.5: the geometric ' +
      'midpoint √(N·B); 1: FiCoCo-V only; 0: FiCoCo-L only).',
  },
  ...visionParams,
  ...llmParams,
  visionStart,
  visionAttention,
  visionSchedule,
  llmStart,
  llmAttention,
  llmSchedule,
} satisfies Record<string, ParamSpec>;

/** Visual tokens the vision side hands the decoder: N^(1−share)·B^share, between the budget and every token. */
export function visionSideTokens(visualTokens: number, keep: number, visionShare: number): number {
  return Math.max(keep, Math.min(visualTokens, Math.round(visualTokens ** (1 - visionShare) * keep ** visionShare)));
}

export const ficocoVL = defineMethod({
  name: 'ficoco-vl',
  description: 'FiCoCo-VL: FiCoCo-V inside the vision encoder, then FiCoCo-L inside the decoder on what is left.',
  reference:
    'Rethinking Token Reduction in MLLMs (arXiv 2411.17686v1, the version with FiCoCo-VL; its Table 3): ' +
    'the FiCoCo-V steps followed by the FiCoCo-L steps, each its clean algorithm (see ficoco-v and ficoco-l). ' +
    'The paper does not say how the budget is split between the two; here the encoder keeps the ' +
    'geometric midpoint √(N·B) by default (visionShare), and FiCoCo-L runs on the image span it actually ' +
    'receives, which the official code skips once FiCoCo-V has shortened the sequence.',
  params: PARAMS,
  plan(model, keep, params) {
    const visionKeep = visionSideTokens(model.visualTokens, keep, params.visionShare);
    const steps = [
      ...ficocoVSteps(
        model,
        visionKeep,
        { ...params, start: params.visionStart, attention: params.visionAttention, schedule: params.visionSchedule },
        'ficoco-vl.visionSchedule',
      ),
      ...ficocoLSteps(
        { ...model, visualTokens: visionKeep },
        keep,
        { ...params, start: params.llmStart, attention: params.llmAttention, schedule: params.llmSchedule },
        'ficoco-vl.llmSchedule',
      ),
    ];
    // Each side's steps are typed by its own parameters; the registry runs them as untyped steps.
    return steps as unknown as Step[];
  },
});
