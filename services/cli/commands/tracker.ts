import type { Command } from 'commander';
import { systemClock } from '../../shared/clock';
import { loadConfig } from '../../shared/config';
import { TrackerConfigSchema } from '../../tracker/config';
import { startTracker } from '../../tracker/main';
import { configHelp } from '../configHelp';
import { note } from '../output';
import {
  explainRoleListenError,
  parsePort,
  roleSecurityOf,
  runUntilSignal,
  serviceLogger,
} from './common';

export const registerTrackerCommands = (program: Command): void => {
  program
    .command('tracker')
    .description(
      'run a tracker: hands each announcing peer a random subset of its swarm, serves ' +
        'metainfo cached from the origins (no blob bytes, no disk)',
    )
    .option('--config <file>', 'YAML configuration file')
    .option('--host <host>', 'listen address (overrides listen.host)')
    .option('--port <port>', 'listen port (overrides listen.port)', parsePort)
    .option('--origin <url...>', 'origin URLs (override origins.urls)')
    .addHelpText('after', configHelp(TrackerConfigSchema))
    .action(
      async (options: { config?: string; host?: string; port?: number; origin?: string[] }) => {
        const config = loadConfig(TrackerConfigSchema, {
          ...(options.config !== undefined && { file: options.config }),
          overrides: {
            listen: { host: options.host, port: options.port },
            ...(options.origin !== undefined && { origins: { urls: options.origin } }),
          },
        });
        const logger = serviceLogger({ level: config.logLevel, name: 'tracker' });
        const { security, dispose } = roleSecurityOf(config, { role: 'tracker' }, logger);
        const service = await startTracker({ config, logger, clock: systemClock, security }).catch(
          (error: unknown) => {
            dispose();
            throw explainRoleListenError(error, 'tracker', config);
          },
        );
        note(`tracker listening on ${service.url}`);
        await runUntilSignal(async () => {
          await service.close();
          dispose();
        });
      },
    );
};
