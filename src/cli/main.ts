import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../client/engineClient';
import { FICOCO_ERROR_KINDS, FicocoError } from '../common/errors';
import { FlopsError } from '../flops/index';
import { BudgetAboveTokensError } from '../reduction/registry';
import { COMMANDS, OVERVIEW } from './commands';
import { rerunAsEngineProcess } from './engineProcess';

/** Commands that run hundreds to thousands of prefills in this process: they need the engine process's settings. */
const LONG_RUNS = ['bench', 'tune', 'eval'];

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== undefined && Object.hasOwn(COMMANDS, command)) {
    if (LONG_RUNS.includes(command)) {
      const childExitCode = await rerunAsEngineProcess();
      if (childExitCode !== undefined) return childExitCode;
    }
    return COMMANDS[command].run(rest);
  }
  if (command === '--version' || command === '-V' || command === 'version') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  // Usage asked for goes to stdout; no command (nothing to do) or an unknown one is a usage error, on stderr.
  if (command === undefined) {
    process.stderr.write(OVERVIEW);
    return 2;
  }
  if (['--help', '-h', 'help'].includes(command)) {
    const [asked] = rest;
    if (asked !== undefined && !Object.hasOwn(COMMANDS, asked)) return unknownCommand(asked);
    process.stdout.write(asked === undefined ? OVERVIEW : COMMANDS[asked].usage);
    return 0;
  }
  return unknownCommand(command);
}

/** One line, as every other mistake gets: the whole usage would push it off the screen. */
function unknownCommand(command: string): number {
  process.stderr.write(
    `error: unknown command "${command}"; the commands are ${Object.keys(COMMANDS).join(', ')}. See \`ficoco --help\`.\n`,
  );
  return 2;
}

/** This package's version: the package.json above this file (dist/cli.js in the package, src/cli/ from source). */
function packageVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const { name, version } = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (name === 'ficoco-vision' && typeof version === 'string') return version;
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}

/** A failure the engine process reports with a FicocoError kind (model folder, image, memory…): the user's to fix. */
function isUserEngineError(error: unknown): error is EngineError {
  return error instanceof EngineError && (FICOCO_ERROR_KINDS as readonly string[]).includes(error.kind);
}

// A reader that stops early (`ficoco methods | head`) is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  process.exit(0);
});

/**
 * A refusal's message in the command line's words: a budget above an image's tokens is told to turn reduction off, which
 * a command that takes --method does with --method none.
 */
function messageFor(error: Error, command: string | undefined): string {
  const takesMethod =
    command !== undefined && Object.hasOwn(COMMANDS, command) && 'method' in COMMANDS[command].options;
  return error instanceof BudgetAboveTokensError && takesMethod
    ? error.withOffOption('--method none').message
    : error.message;
}

/**
 * Every message after "error:" starts in lower case, the command line's own and the engine's (a sentence in the chat
 * and the server). Only an ordinary capitalised first word is lowered: an acronym (ONNX), a name (FiCoCo, PyTorch) and
 * a file named on the command line ("Screenshot 1.png is not an image") keep their case.
 */
function lowerCaseStart(message: string, args: readonly string[]): string {
  const names = args.flatMap((arg) => [arg, path.basename(arg)]).filter((name) => name !== '');
  if (names.some((name) => message.startsWith(name))) return message;
  return message.replace(/^[A-Z](?=[a-z]*\s)/, (letter) => letter.toLowerCase());
}

const argv = process.argv.slice(2);
// exitCode instead of exit(): stdout to a pipe is asynchronous and must drain first.
main(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof FicocoError || error instanceof FlopsError || isUserEngineError(error)) {
      process.stderr.write(`error: ${lowerCaseStart(messageFor(error, argv[0]), argv)}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 1;
    }
  },
);
