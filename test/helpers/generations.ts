import { LlavaEngine } from '../../src/engine/engine';

/**
 * Runs `work` and counts the generations (prefills) every engine in this process ran meanwhile: 0 where a command
 * refused its options before answering or timing anything.
 */
export async function countingGenerations(work: () => Promise<unknown>): Promise<number> {
  const generate = Object.getOwnPropertyDescriptor(LlavaEngine.prototype, 'generate')!;
  let count = 0;
  Object.defineProperty(LlavaEngine.prototype, 'generate', {
    ...generate,
    value(this: LlavaEngine, ...args: Parameters<LlavaEngine['generate']>) {
      count++;
      return (generate.value as LlavaEngine['generate']).apply(this, args);
    },
  });
  try {
    await work();
  } finally {
    Object.defineProperty(LlavaEngine.prototype, 'generate', generate);
  }
  return count;
}
