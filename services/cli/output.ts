import { isShoalError } from '../../domain';

/** stdout is for data (so commands can be scripted); messages and errors go to stderr. */
export const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

export const printJson = (value: unknown): void => print(JSON.stringify(value));

export const note = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/** Prints an error the way a user can act on it and sets a non-zero exit code. */
export const reportError = (error: unknown): void => {
  if (isShoalError(error)) {
    note(`error: ${error.message} [${error.code}]`);
  } else {
    note(`error: ${(error as Error)?.stack ?? String(error)}`);
  }
  process.exitCode = 1;
};
