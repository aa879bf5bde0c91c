import type { Command } from 'commander';
import type { RecordedEvent } from '../../../domain';
import { ShoalError, eventTypes } from '../../../domain';
import { print, printJson } from '../output';
import type { GlobalOptions } from './common';
import { addConfigOption, addDataDirOption, withState } from './common';

// Human output: fixed columns, so lines printed as events arrive (--follow) line up too. A
// stream or actor longer than its column pushes the rest along rather than being cut.
const typeWidth = Math.max(...eventTypes.map((type) => type.length));
const columns = [8, 24, typeWidth, 48, 20] as const;
const row = (cells: ReadonlyArray<string | number>): string =>
  cells
    .map((cell, i) => (i < columns.length ? String(cell).padEnd(columns[i] ?? 0) : String(cell)))
    .join('  ')
    .trimEnd();
const header = row(['POSITION', 'TIME', 'TYPE', 'STREAM', 'ACTOR', 'CLIENT']);
const formatEvent = (event: RecordedEvent): string =>
  row([
    event.position,
    event.metadata.at,
    event.type,
    event.stream,
    event.metadata.actor,
    event.metadata.client ?? '-',
  ]);

export const registerLogCommands = (program: Command): void => {
  const log = program.command('log').description('inspect the event log');
  addConfigOption(addDataDirOption(log.command('tail')))
    .description(
      'print events (the last 20, or from a position), optionally following new ones: ' +
        'position, time, type, stream, actor and client address (--json: whole events, with ' +
        'their data)',
    )
    .option('--from <position>', 'first position to print')
    .option('-f, --follow', 'keep printing events as they are appended')
    .option('--json', 'one JSON event per line')
    .action(
      async (options: GlobalOptions & { from?: string; follow?: boolean; json?: boolean }) => {
        if (options.from !== undefined && !/^\d{1,15}$/.test(options.from)) {
          throw new ShoalError('POSITION_INVALID', '--from must be a non-negative integer');
        }
        const show = (event: RecordedEvent) =>
          options.json ? printJson(event) : print(formatEvent(event));
        await withState(options, false, async (state) => {
          if (!options.json) print(header);
          const from =
            options.from !== undefined
              ? Math.max(1, Number(options.from))
              : Math.max(1, (await state.log.head()) - 19);
          if (!options.follow) {
            for await (const event of state.log.read(from)) show(event);
            return;
          }
          await new Promise<void>((resolve, reject) => {
            const subscription = state.log.subscribe(from).subscribe({
              next: show,
              error: reject,
              complete: resolve,
            });
            const stop = () => {
              subscription.unsubscribe();
              resolve();
            };
            process.once('SIGINT', stop);
            process.once('SIGTERM', stop);
          });
        });
      },
    );
};
