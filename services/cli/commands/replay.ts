import type { Command } from 'commander';
import type { Projection } from '../../../domain';
import { ShoalError } from '../../../domain';
import { createMemoryProjectionStore } from '../../../adapters/projection-store/memory/memoryProjectionStore';
import { allProjections } from '../../../projections';
import { rebuildProjection } from '../../shared/rebuildProjection';
import { verifyProjection } from '../../shared/verifyProjection';
import { createProgress, progressMode } from '../../shared/progress';
import { note, print, printJson } from '../output';
import type { GlobalOptions } from './common';
import { addConfigOption, addDataDirOption, withState } from './common';

const selected = (name: string | undefined): Projection[] => {
  if (name === undefined) return Object.values(allProjections);
  const projection = allProjections[name];
  if (projection === undefined) {
    throw new ShoalError(
      'PROJECTION_UNKNOWN',
      `unknown projection "${name}"; known: ${Object.keys(allProjections).join(', ')}`,
    );
  }
  return [projection];
};

export const registerReplayCommand = (program: Command): void => {
  addConfigOption(addDataDirOption(program.command('replay')))
    .description(
      'rebuild projections by replaying the log from position 1; with --verify, rebuild into ' +
        'scratch state and compare it with the live state (exit 1 when they differ)',
    )
    .option('--projection <name>', `one projection (${Object.keys(allProjections).join(', ')})`)
    .option('--verify', 'compare a fresh rebuild with the live state instead of replacing it')
    .option('--json', 'print JSON; progress as JSON lines on stderr')
    .action(
      async (
        options: GlobalOptions & { projection?: string; verify?: boolean; json?: boolean },
      ) => {
        const chosen = selected(options.projection);
        const mode = progressMode({ json: options.json === true });
        const progressOf = (label: string) => createProgress({ label, unit: 'positions', mode });
        await withState(options, false, async ({ log, store }) => {
          let differ = false;
          for (const projection of chosen) {
            if (options.verify) {
              const scratch = createMemoryProjectionStore();
              const result = await verifyProjection({
                log,
                store,
                projection,
                scratch,
                progress: progressOf(`verify ${projection.name}`),
              });
              await scratch.close();
              differ ||= !result.equal;
              if (options.json) printJson({ projection: projection.name, ...result });
              else
                print(
                  `${projection.name}: ${result.equal ? 'OK' : 'DIFFERENT'} at position ` +
                    `${result.position}\n  live    ${result.live}\n  rebuilt ${result.rebuilt}`,
                );
            } else {
              if (mode === 'quiet') note(`replaying ${projection.name}…`);
              const result = await rebuildProjection({
                log,
                store,
                projection,
                progress: progressOf(`replay ${projection.name}`),
              });
              const rate = result.ms > 0 ? Math.round((result.events * 1000) / result.ms) : 0;
              if (options.json) printJson({ projection: projection.name, ...result });
              else
                print(
                  `${projection.name}: ${result.events} events to position ${result.position} ` +
                    `in ${(result.ms / 1000).toFixed(2)} s (${rate} events/s)`,
                );
            }
          }
          if (differ) process.exitCode = 1;
        });
      },
    );
};
