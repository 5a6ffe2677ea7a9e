import { LlavaEngine } from '../../src/engine/engine';

type Generate = LlavaEngine['generate'];

/** Runs `work` with every engine's generate() going through `wrap`, which gets the engine's own and the arguments. */
async function wrappingGenerations(
  wrap: (generate: Generate, args: Parameters<Generate>) => ReturnType<Generate>,
  work: () => Promise<unknown>,
): Promise<void> {
  const generate = Object.getOwnPropertyDescriptor(LlavaEngine.prototype, 'generate')!;
  Object.defineProperty(LlavaEngine.prototype, 'generate', {
    ...generate,
    value(this: LlavaEngine, ...args: Parameters<Generate>) {
      return wrap((generate.value as Generate).bind(this), args);
    },
  });
  try {
    await work();
  } finally {
    Object.defineProperty(LlavaEngine.prototype, 'generate', generate);
  }
}

/**
 * Runs `work` and counts the generations (prefills) every engine in this process ran meanwhile: 0 where a command
 * refused its options before answering or timing anything.
 */
export async function countingGenerations(work: () => Promise<unknown>): Promise<number> {
  let count = 0;
  await wrappingGenerations((generate, args) => {
    count++;
    return generate(...args);
  }, work);
  return count;
}

/**
 * Runs `work` with the generation number `failing` (from 1) of any engine in this process rejected with "stopped", as a
 * run killed there would stop: the reports a command wrote before it are what it leaves.
 */
export function stoppingAtGeneration(failing: number, work: () => Promise<unknown>): Promise<void> {
  let count = 0;
  return wrappingGenerations(
    (generate, args) => (++count === failing ? Promise.reject(new Error('stopped')) : generate(...args)),
    work,
  );
}
