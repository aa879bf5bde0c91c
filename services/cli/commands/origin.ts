import type { Command } from 'commander';
import { ringMembers, ringStream } from '../../../domain';
import { createOriginBackends } from '../../origin/backendConfig';
import { systemClock } from '../../shared/clock';
import { loadConfig } from '../../shared/config';
import { OriginConfigSchema } from '../../origin/config';
import { leaveRing, startOrigin } from '../../origin/main';
import { openLocalState } from '../compose';
import { configHelp } from '../configHelp';
import { note, print, printJson, table } from '../output';
import type { GlobalOptions } from './common';
import {
  addDataDirOption,
  claimDataDir,
  defaultLogConfig,
  parsePort,
  explainRoleListenError,
  roleSecurityOf,
  runUntilSignal,
  serviceLogger,
  withState,
} from './common';

type OriginOptions = GlobalOptions & { config?: string; host?: string; port?: number; id?: string };

export const registerOriginCommands = (program: Command): void => {
  const origin = addDataDirOption(program.command('origin'))
    .description(
      'run an origin: stores blobs on a rendezvous ring, writes them back to the storage ' +
        'backend, serves the internal blob API',
    )
    .option('--config <file>', 'YAML configuration file')
    .option('--id <id>', 'origin id on the ring (overrides id)')
    .option('--host <host>', 'listen address (overrides listen.host)')
    .option('--port <port>', 'listen port (overrides listen.port)', parsePort)
    .addHelpText('after', configHelp(OriginConfigSchema))
    .action(async (options: OriginOptions) => {
      const config = loadConfig(OriginConfigSchema, {
        ...(options.config !== undefined && { file: options.config }),
        overrides: {
          ...(options.dataDir !== undefined && { dataDir: options.dataDir }),
          ...(options.id !== undefined && { id: options.id }),
          listen: { host: options.host, port: options.port },
        },
      });
      const logger = serviceLogger({ level: config.logLevel, name: 'origin' });
      const { lock } = claimDataDir(
        config.dataDir,
        { kind: 'role', role: 'origin', id: config.id, cluster: config.cluster },
        `shoal origin ${config.id}`,
      );
      let made: ReturnType<typeof roleSecurityOf>;
      try {
        made = roleSecurityOf(config, { role: 'origin', name: config.id }, logger);
      } catch (error) {
        lock.release();
        throw error;
      }
      const { security, dispose } = made;
      const state = await openLocalState({
        dataDir: config.dataDir,
        log: config.log,
        create: true,
      }).catch((error: unknown) => {
        dispose();
        lock.release();
        throw error;
      });
      const service = await startOrigin({
        config,
        logger,
        clock: systemClock,
        log: state.log,
        store: state.store,
        security,
        ...createOriginBackends(config, state.dataDir.root),
      }).catch(async (error: unknown) => {
        await state.close();
        dispose();
        lock.release();
        throw explainRoleListenError(error, 'origin', config, { what: 'seeder' });
      });
      lock.update({ origin: service.url });
      note(
        `origin ${service.id} listening on ${service.url} ` +
          `(advertised as ${service.advertiseUrl}, data directory ${state.dataDir.root})`,
      );
      // No OriginLeft on a signal: a restart keeps its blobs (`shoal origin leave` for good).
      await runUntilSignal(async () => {
        await service.close();
        await state.close();
        dispose();
        lock.release();
      });
    });

  addDataDirOption(origin.command('leave').argument('<id>'))
    .description(
      'take an origin off the ring for good (appends OriginLeft); its blobs are fetched by ' +
        'their new owners from peers or the backend as they are read',
    )
    .option('--force', 'take the last origin off too (the ring is then empty: every pull fails)')
    .action(async (id: string, _options: unknown, command: Command) => {
      // `--data-dir` may be given before the subcommand, where `origin` takes it.
      const options = command.optsWithGlobals<GlobalOptions & { force?: boolean }>();
      const position = await withState(options, false, ({ log }) =>
        leaveRing({
          log,
          clock: systemClock,
          cluster: defaultLogConfig.cluster,
          id,
          force: options.force === true,
        }),
      );
      print(`origin ${id} left the ring at position ${position}`);
    });

  addDataDirOption(origin.command('ring'))
    .description('list the origins on the ring, as the log records them')
    .option('--json', 'print JSON')
    .action(async (_options: unknown, command: Command) => {
      const options = command.optsWithGlobals<GlobalOptions & { json?: boolean }>();
      const members = await withState(options, false, async ({ log }) =>
        ringMembers(await log.readStream(ringStream)),
      );
      if (options.json) printJson({ members });
      else {
        print(
          table(
            ['ID', 'ADDRESS', 'JOINED AT'],
            members.map((m) => [m.id, m.address, m.position]),
          ),
        );
      }
    });
};
