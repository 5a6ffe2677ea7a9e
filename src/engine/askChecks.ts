/**
 * What the engine refuses in a question before and while it answers: an empty question, answer options out of range,
 * images in earlier turns, and a step whose logits are all NaN; each says what to change.
 */
import { FicocoError } from '../common/errors';
import type { AskRequest } from './api';
import type { ChatMessage } from './text/chat-template';

/** The answer's length in tokens when a question does not say (AskRequest.maxNewTokens). */
export const DEFAULT_MAX_NEW_TOKENS = 256;

/** Refuses an empty question. */
export function checkQuestion(question: string): void {
  if (question.trim() === '')
    throw new FicocoError('The question is empty; type what you want to know about the image.', 'input');
}

/**
 * Refuses a token limit that is not a whole number of tokens (2.5 answered with 3, NaN and -1 with none) and sampling
 * settings that are not numbers in their range (a NaN temperature drew the least probable token at every step).
 */
export function checkAnswerOptions({ maxNewTokens, sampling }: AskRequest): void {
  const refuse = (field: string, value: number, expected: string) => {
    throw new FicocoError(`${field} is ${value}; ${expected}.`, 'input');
  };
  if (maxNewTokens !== undefined && !(Number.isInteger(maxNewTokens) && maxNewTokens >= 0))
    refuse('maxNewTokens', maxNewTokens, 'it is a whole number of tokens, 0 or more');
  if (!sampling) return;
  const { temperature, topP, seed, topK, minP, repetitionPenalty } = sampling;
  // A negative temperature was taken as greedy, where the CLI and the server refuse it.
  if (!(Number.isFinite(temperature) && temperature >= 0))
    refuse('sampling.temperature', temperature, 'it is 0 for greedy, or above 0 to sample');
  // A JavaScript caller's topP and seed left out sample as before: the whole distribution, seed 0.
  if (topP !== undefined && !(topP >= 0 && topP <= 1))
    refuse('sampling.topP', topP, 'it is a share of the probability, from 0 to 1');
  if (seed !== undefined && !Number.isFinite(seed))
    refuse('sampling.seed', seed, 'it is a number (taken as an unsigned 32-bit integer)');
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 0))
    refuse('sampling.topK', topK, 'it is a whole number of tokens, or 0 for every token');
  if (minP !== undefined && !(minP >= 0 && minP <= 1))
    refuse('sampling.minP', minP, "it is a share of the top token's probability, from 0 to 1");
  if (repetitionPenalty !== undefined && !(Number.isFinite(repetitionPenalty) && repetitionPenalty > 0))
    refuse('sampling.repetitionPenalty', repetitionPenalty, 'it is above 0: 1 for none, above 1 to repeat less');
}

/**
 * An earlier turn as the chat template gets it: a string's content (as ChatMessage allows) becomes its one text part,
 * since chat templates of LLaVA models iterate over a message's parts, as the question's are given, and fail on a
 * string. An image part is refused: a question's images are its own, and one marked in the history would have none to
 * go with it (the prompt would have more placeholders than images, found only after the images were read).
 */
export function textTurn(message: ChatMessage, index: number): ChatMessage {
  const { content } = message;
  if (typeof content === 'string') return { ...message, content: [{ type: 'text', text: content }] };
  if (content.some((part) => part.type === 'image'))
    throw new FicocoError(
      `history message ${index + 1} (${message.role}) has an image; earlier turns are text only: give the ` +
        "question the images it is about (its images), and the history their turns' text.",
      'input',
    );
  return message;
}

/**
 * Refuses a step whose logits are all NaN: weights holding NaN or infinities (a corrupt checkpoint, which a float32 load
 * maps without reading), or a float16 run that overflowed. Sampling would answer its first token again and again.
 */
export function checkLogits(logits: Float32Array, step: number): void {
  for (const logit of logits) if (!Number.isNaN(logit)) return;
  throw new FicocoError(
    `The model computed no number for any token ${step === 0 ? 'after the prompt' : `at answer token ${step + 1}`} ` +
      '(every logit NaN): its weights hold NaN or infinite values, or half precision overflowed. Download the ' +
      'model again; on a GPU, try ficoco.quantization none or the cpu provider.',
    'weights',
  );
}
