import type { ParseArgsConfig } from 'node:util';
import { parseArgs } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * A bench's command line: `--help` prints `usage` and exits; an unknown option or a missing
 * value prints what was wrong and the usage, and exits 2 (never a stack trace).
 */
export const benchArgs = <const O extends Options>(name: string, options: O, usage: string) => {
  if (process.argv.slice(2).some((arg) => arg === '--help' || arg === '-h')) {
    process.stdout.write(`${usage}\n`);
    return process.exit(0);
  }
  try {
    return parseArgs({ options }).values;
  } catch (error) {
    process.stderr.write(`${name}: ${(error as Error).message}\n\n${usage}\n`);
    return process.exit(2);
  }
};
