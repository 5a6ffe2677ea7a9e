import { METHODS } from '../reduction/registry';
import { CommandOptions, parseCommandArgs } from './args';

export const METHODS_USAGE = `Usage:
  ficoco methods [--verbose]         the reduction methods and their parameters; --verbose: where each comes from
`;

export const METHODS_OPTIONS = {
  verbose: { type: 'boolean' },
  help: { type: 'boolean' },
} satisfies CommandOptions;

/** `ficoco methods`: every reduction method, its parameters and (--verbose) where it comes from. */
export function methodsCommand(args: string[]): number {
  const { values } = parseCommandArgs('methods', { args, options: METHODS_OPTIONS });
  if (values.help) {
    process.stdout.write(METHODS_USAGE);
    return 0;
  }
  for (const method of METHODS) {
    process.stdout.write(`${method.name}\n  ${method.description}\n`);
    if (values.verbose) process.stdout.write(`  ${method.reference}\n`);
    for (const [name, spec] of Object.entries(method.params)) {
      const range =
        spec.type === 'enum'
          ? spec.values.join(' | ')
          : spec.type === 'boolean'
            ? 'true | false'
            : spec.type === 'list'
              ? 'numbers ≥ 0, comma-separated'
              : `${spec.min} … ${spec.max}`;
      // An empty list is shown as "" so that the line does not read as a missing value.
      const shown = spec.default === '' ? '""' : spec.default;
      process.stdout.write(`    ${name} = ${shown}  (${range})  ${spec.description}\n`);
    }
  }
  return 0;
}
