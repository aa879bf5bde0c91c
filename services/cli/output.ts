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

// A closed pipe (`shoal log tail | head -1`): the reader has all it wants. The command ends
// quietly, as `cat` does: a service stops the way a signal stops it, anything else exits.

const closedPipeListeners = new Set<() => void>();

/** While registered, a closed stdout or stderr calls `listener` instead of exiting. */
export const onClosedPipe = (listener: () => void): (() => void) => {
  closedPipeListeners.add(listener);
  return () => closedPipeListeners.delete(listener);
};

let pipeClosed = false;

/** For stdout, stderr and log destinations: EPIPE ends the command quietly. */
export const handleOutputError = (error: NodeJS.ErrnoException): void => {
  if (error.code !== 'EPIPE') throw error;
  if (pipeClosed) return;
  pipeClosed = true;
  if (closedPipeListeners.size > 0) {
    for (const listener of closedPipeListeners) listener();
    return;
  }
  process.exit();
};

/** Installs {@link handleOutputError} on stdout and stderr (once, at start). */
export const guardOutputPipes = (): void => {
  process.stdout.on('error', handleOutputError);
  process.stderr.on('error', handleOutputError);
};

/**
 * Rows as aligned columns under a header, two spaces apart (the last column unpadded, so long
 * values such as digests and errors run on without pushing the others); a missing cell is `-`.
 */
export const table = (
  header: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | number | undefined>>,
): string => {
  const cells = [header, ...rows].map((row) =>
    row.map((cell) => (cell === undefined ? '-' : String(cell))),
  );
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i]?.length ?? 0)));
  return cells
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
};
