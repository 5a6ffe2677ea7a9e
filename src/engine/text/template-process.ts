import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { FicocoError } from '../../common/errors';
import type { TemplateContext, TemplateParsed, TemplateReply, TemplateSetup, TemplateStarted } from './template-child';

/** What one render of a model's chat template may cost. */
export interface RenderLimits {
  /** wall-clock time of one render */
  timeoutMs: number;
  /** V8 heap of the process that renders */
  memoryMb: number;
  /** length of the rendered prompt */
  maxOutputChars: number;
}

export const DEFAULT_RENDER_LIMITS: RenderLimits = {
  // Real chat templates render in milliseconds: this only ever stops a loop that does not end.
  timeoutMs: 5_000,
  // A template and its conversation need a few MB; the rest is headroom.
  memoryMb: 256,
  // About a million tokens, beyond any model's context: a prompt never needs more.
  maxOutputChars: 4 * 1024 * 1024,
};

// The child stops a render itself at timeoutMs; this covers a late stop near its memory limit.
const UNANSWERED_GRACE_MS = 3_000;
// Starting the child is the machine's work, not the template's: on a loaded machine it took over 8 s (from source).
const START_LIMIT_MS = 60_000;

// dist/template-child.js beside the bundle that runs this, or template-child.ts beside this file under `node --import
// tsx`.
const TEMPLATE_CHILD_FILE = path.join(__dirname, `template-child${path.extname(__filename)}`);

/**
 * Renders one Jinja template in a child process, one render at a time, started on first use and kept for the next.
 * A worker thread is not enough: one large allocation (`{{ range(16000000)|length }}`) aborts the whole process
 * despite the worker's resourceLimits (nodejs/node#47224).
 */
export class TemplateProcess {
  private child: ChildProcess | undefined;
  /** whether the current child's template parsed */
  private parsed: Promise<void> = Promise.resolve();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly source: string,
    /** the file the template came from, for error messages */
    private readonly origin: string,
    private readonly limits: RenderLimits,
  ) {}

  render(context: TemplateContext): Promise<string> {
    const rendered = this.queue.then(() => this.renderNow(context));
    this.queue = rendered.catch(() => undefined);
    return rendered;
  }

  /** Starts the child, which parses the template: a FicocoError when it does not parse, or not in time. */
  check(): Promise<void> {
    this.child ??= this.start();
    return this.parsed;
  }

  /** Stops the child; a later render would start another. */
  dispose(): void {
    if (this.child) this.stop(this.child);
  }

  private async renderNow(context: TemplateContext): Promise<string> {
    await this.check();
    const child = this.child!;
    child.send(context); // the reply comes in a later turn of the event loop, after nextAnswer's listeners are in place
    return this.nextAnswer<string>(child, (reply) => this.resultOf(reply as TemplateReply), {
      unreachable: (error) => this.unusable(`could not be rendered (${error.message})`),
      silent: () => this.timeoutError(),
    });
  }

  /**
   * The child's next message, read by `read` (a value, or the error to fail with). Its exit, an error reaching it
   * (stopping it) or silence past `waitMs` (a render's time and the grace, unless said; stopping it) fail the answer
   * instead.
   */
  private nextAnswer<T>(
    child: ChildProcess,
    read: (reply: unknown) => T | Error,
    failed: { unreachable: (error: Error) => Error; silent: () => Error },
    waitMs = this.limits.timeoutMs + UNANSWERED_GRACE_MS,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      // Plain listeners and a timer: events.once with an AbortSignal costs about 0.1 ms more per render.
      const settle = (result: T | Error) => {
        clearTimeout(unanswered);
        child.off('message', onReply).off('exit', onExit).off('error', onError);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      const onReply = (reply: unknown) => settle(read(reply));
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => settle(this.exitError(code, signal));
      const onError = (error: Error) => {
        this.stop(child); // it could not be started or reached
        settle(failed.unreachable(error));
      };
      const unanswered = setTimeout(() => {
        this.stop(child);
        settle(failed.silent());
      }, waitMs);
      child.on('message', onReply).on('exit', onExit).on('error', onError);
    });
  }

  private start(): ChildProcess {
    const child = fork(TEMPLATE_CHILD_FILE, [], {
      // tsx's --import must reach the child when running from source; a debugger's port must not.
      execArgv: [
        ...process.execArgv.filter((flag) => !flag.startsWith('--inspect')),
        `--max-old-space-size=${this.limits.memoryMb}`,
      ],
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    });
    const forget = () => {
      if (this.child === child) this.child = undefined;
    };
    child.on('exit', forget).on('error', forget);
    this.parsed = this.parseOutcome(child);
    // An idle child must not keep the engine's process alive; while a render waits, its timer does.
    child.unref();
    child.channel?.unref();
    return child;
  }

  /**
   * The child started (within START_LIMIT_MS), then sent the template: it parsed, did not, or did not within a render's
   * time; a failure stops it.
   */
  private async parseOutcome(child: ChildProcess): Promise<void> {
    // Not the template's fault: the machine could not start a process (out of processes or files, or overloaded).
    const notStarted = (why: string) => new Error(`The chat template's process could not be started: ${why}`);
    const setup: TemplateSetup = {
      source: this.source,
      timeoutMs: this.limits.timeoutMs,
      maxOutputChars: this.limits.maxOutputChars,
    };
    const waitS = (this.limits.timeoutMs + UNANSWERED_GRACE_MS) / 1000;
    try {
      await this.nextAnswer<undefined>(
        child,
        (reply) =>
          (reply as TemplateStarted).outcome === 'started' ? undefined : notStarted('it answered out of turn'),
        {
          unreachable: (error) => notStarted(error.message),
          silent: () => notStarted(`it did not start within ${START_LIMIT_MS / 1000} s (is the machine overloaded?)`),
        },
        START_LIMIT_MS,
      );
      // Sent only now, after the listener for its answer is in place, so that the answer cannot come before it.
      const parsed = this.nextAnswer<undefined>(
        child,
        (reply) => {
          const outcome = reply as TemplateParsed;
          if (outcome.outcome === 'parsed') return undefined;
          return new FicocoError(
            `The chat template in ${this.origin} does not parse (${outcome.message}); this model folder cannot be used.`,
            'config',
          );
        },
        {
          unreachable: (error) => notStarted(error.message),
          silent: () => this.unusable(`did not parse within ${waitS} s`),
        },
      );
      child.send(setup);
      await parsed;
    } catch (error) {
      this.stop(child);
      throw error;
    }
  }

  private stop(child: ChildProcess): void {
    child.kill('SIGKILL'); // even a child stuck collecting garbage, or stopped, ends at once
    if (this.child === child) this.child = undefined;
  }

  private resultOf(reply: TemplateReply): string | FicocoError {
    switch (reply.outcome) {
      case 'rendered':
        return reply.text;
      case 'raised': // raise_exception in the template, about this conversation
        return new FicocoError(
          `The chat template in ${this.origin} cannot render this conversation: ${reply.message}`,
          'input',
        );
      case 'exhausted':
        return this.unusable(`ran out of room while rendering (${reply.message})`);
      case 'timed-out':
        return this.timeoutError();
      case 'too-long':
        return this.unusable(`produced more than ${this.limits.maxOutputChars} characters (${reply.length})`);
    }
  }

  private exitError(code: number | null, signal: NodeJS.Signals | null): FicocoError {
    // V8 aborts a process that reaches its heap limit: SIGABRT, or exit code 134 where there are no signals.
    if (signal === 'SIGABRT' || code === 134)
      return this.unusable(`used more than ${this.limits.memoryMb} MB while rendering`);
    return this.unusable(`could not be rendered: its process stopped (${signal ?? `exit code ${code}`})`);
  }

  private timeoutError(): FicocoError {
    return this.unusable(`did not finish within ${this.limits.timeoutMs / 1000} s (a loop that never ends?)`);
  }

  private unusable(what: string): FicocoError {
    return new FicocoError(
      `The chat template in ${this.origin} ${what}; this model folder cannot be used as is.`,
      'config',
    );
  }
}
