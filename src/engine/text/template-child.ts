// The process that renders one chat template for TemplateProcess (template-process.ts): a template that loops
// or allocates without end stops or crashes this process, never the engine's.
import vm from 'node:vm';
import { Template } from '@huggingface/jinja';

/** The first message: the template, and the limits this process enforces itself. */
export interface TemplateSetup {
  source: string;
  timeoutMs: number;
  maxOutputChars: number;
}

/** What this process sends once it has started, before it is sent the template. */
export type TemplateStarted = { outcome: 'started' };

/** The answer to the first message: whether the template parses. */
export type TemplateParsed = { outcome: 'parsed' } | { outcome: 'invalid'; message: string };

/** Every later message: the variables of one render. */
export type TemplateContext = Record<string, unknown>;

/** The answer to one render. */
export type TemplateReply =
  | { outcome: 'rendered'; text: string }
  | { outcome: 'raised'; message: string }
  | { outcome: 'exhausted'; message: string }
  | { outcome: 'timed-out' }
  | { outcome: 'too-long'; length: number };

/** What a render sees: the parsed template and the variables of the current render. */
interface RenderSandbox {
  template: Template;
  context: TemplateContext;
}

// Renders run as vm calls because vm's timeout interrupts synchronous code: an endless loop stops here even
// when the engine's process is gone. One vm context serves every render (creating one costs about a millisecond).
const renderScript = new vm.Script('template.render(context)');

// Started: the parent's limits count the template's own work from here, not the machine's time to start a process.
process.send?.({ outcome: 'started' } satisfies TemplateStarted);

// Parsing runs here too: its time grows with the square of some inputs (a long run of whitespace).
process.once('message', (setupMessage) => {
  const setup = setupMessage as TemplateSetup;
  let template: Template;
  try {
    template = new Template(setup.source);
  } catch (error) {
    process.send?.({ outcome: 'invalid', message: (error as Error).message } satisfies TemplateParsed);
    return;
  }
  process.send?.({ outcome: 'parsed' } satisfies TemplateParsed);
  const sandbox = vm.createContext({ template, context: {} }) as RenderSandbox;
  process.on('message', (context) => process.send?.(render(sandbox, context as TemplateContext, setup)));
});

function render(sandbox: RenderSandbox, context: TemplateContext, limits: TemplateSetup): TemplateReply {
  sandbox.context = context;
  let text: string;
  try {
    text = renderScript.runInContext(sandbox, { timeout: limits.timeoutMs });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return { outcome: 'timed-out' };
    // @huggingface/jinja throws Error and SyntaxError; a RangeError is the JS engine's (stack depth, string or array
    // length).
    if (error instanceof RangeError) return { outcome: 'exhausted', message: error.message };
    return { outcome: 'raised', message: (error as Error).message };
  }
  return text.length > limits.maxOutputChars
    ? { outcome: 'too-long', length: text.length }
    : { outcome: 'rendered', text };
}
