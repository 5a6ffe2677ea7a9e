import { ASK_OPTIONS, ASK_USAGE, askCommand } from './ask';
import { BENCH_OPTIONS, BENCH_USAGE, benchCommand } from './bench';
import { EVAL_OPTIONS, EVAL_USAGE, evalCommand } from './eval';
import { FLOPS_OPTIONS, FLOPS_USAGE, flopsCommand } from './flops';
import { METHODS_OPTIONS, METHODS_USAGE, methodsCommand } from './methods';
import { MODELS_OPTIONS, MODELS_USAGE, modelsCommand } from './models';
import { PROVIDERS_OPTIONS, PROVIDERS_USAGE, providersCommand } from './providers';
import { REDUCE_OPTIONS, REDUCE_USAGE, reduceCommand } from './reduce';
import { SERVE_OPTIONS, SERVE_USAGE, serveCommand } from './serve';
import { TUNE_OPTIONS, TUNE_USAGE, tuneCommand } from './tune';
import { CommandOptions } from './args';

export interface Command {
  /** what the command does, one line of `ficoco --help` */
  summary: string;
  /** `ficoco COMMAND --help`: its usage and every option */
  usage: string;
  /** the options its parser takes */
  options: CommandOptions;
  run(args: string[]): number | Promise<number>;
}

/** Each command, in the order `ficoco --help` lists them and an unknown command is answered with. */
export const COMMANDS: Record<string, Command> = {
  ask: {
    summary: 'answer a question about screenshots or diagrams, with or without token reduction',
    usage: ASK_USAGE,
    options: ASK_OPTIONS,
    run: askCommand,
  },
  methods: {
    summary: 'the visual token reduction methods and their parameters',
    usage: METHODS_USAGE,
    options: METHODS_OPTIONS,
    run: methodsCommand,
  },
  flops: {
    summary: "a model's analytic prefill FLOPs and KV cache, unreduced and with a method",
    usage: FLOPS_USAGE,
    options: FLOPS_OPTIONS,
    run: flopsCommand,
  },
  reduce: {
    summary: "run a method's steps on saved tensors and write the reduced tokens",
    usage: REDUCE_USAGE,
    options: REDUCE_OPTIONS,
    run: reduceCommand,
  },
  eval: {
    summary: 'accuracy of every method and budget on an evaluation set',
    usage: EVAL_USAGE,
    options: EVAL_OPTIONS,
    run: evalCommand,
  },
  bench: {
    summary: 'speed of every method and budget against the unreduced model on this machine',
    usage: BENCH_USAGE,
    options: BENCH_OPTIONS,
    run: benchCommand,
  },
  tune: {
    summary: "find the fastest reduction that keeps the model's accuracy, for --method auto",
    usage: TUNE_USAGE,
    options: TUNE_OPTIONS,
    run: tuneCommand,
  },
  models: {
    summary: 'the model presets and downloads; download, delete, clean up',
    usage: MODELS_USAGE,
    options: MODELS_OPTIONS,
    run: modelsCommand,
  },
  providers: {
    summary: "what this machine's ONNX Runtime can run on; install the CUDA provider",
    usage: PROVIDERS_USAGE,
    options: PROVIDERS_OPTIONS,
    run: providersCommand,
  },
  serve: {
    summary: "serve the model over OpenAI's Chat Completions API",
    usage: SERVE_USAGE,
    options: SERVE_OPTIONS,
    run: serveCommand,
  },
};

/** `ficoco --help`: one line per command, and how to get a command's own. */
export const OVERVIEW = `Usage:
  ficoco COMMAND [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, command]) => `  ${name.padEnd(11)}${command.summary}\n`)
  .join('')}
\`ficoco COMMAND --help\` or \`ficoco help COMMAND\`: that command's usage and options.
\`ficoco --version\`: this package's version.
`;
