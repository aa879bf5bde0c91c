import type { Command } from 'commander';
import { ShoalError } from '../../../domain';
import { systemClock } from '../../shared/clock';
import { describeEnv, loadConfig } from '../../shared/config';
import { createLogger } from '../../shared/logger';
import { TrackerConfigSchema } from '../../tracker/config';
import { startTracker } from '../../tracker/main';
import { note } from '../output';

const parsePort = (text: string): number => {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ShoalError('CONFIG_INVALID', `invalid port "${text}"`);
  }
  return port;
};

/**
 * Keeps a service running until SIGINT/SIGTERM (or until `until` resolves with a reason),
 * then closes it.
 */
export const runUntilSignal = (
  close: () => Promise<void>,
  until?: Promise<string>,
): Promise<void> =>
  new Promise((resolve) => {
    let stopped = false;
    const stop = (reason?: string) => {
      if (stopped) return;
      stopped = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      note(reason === undefined ? 'shutting down…' : `${reason}: shutting down…`);
      close().then(resolve, (error: unknown) => {
        note(`error while shutting down: ${String(error)}`);
        process.exitCode = 1;
        resolve();
      });
    };
    const onSignal = () => stop();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    void until?.then(stop);
  });

export const envHelp = (schema: Parameters<typeof describeEnv>[0]): string =>
  `\nConfiguration (YAML keys; environment variables override the file):\n${describeEnv(schema)
    .map((e) => `  ${e.name.padEnd(44)} default: ${JSON.stringify(e.default)}`)
    .join('\n')}\n`;

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
    .addHelpText('after', envHelp(TrackerConfigSchema))
    .action(
      async (options: { config?: string; host?: string; port?: number; origin?: string[] }) => {
        const config = loadConfig(TrackerConfigSchema, {
          ...(options.config !== undefined && { file: options.config }),
          overrides: {
            listen: { host: options.host, port: options.port },
            ...(options.origin !== undefined && { origins: { urls: options.origin } }),
          },
        });
        const logger = createLogger({ level: config.logLevel, name: 'tracker' });
        const service = await startTracker({ config, logger, clock: systemClock });
        note(`tracker listening on ${service.url}`);
        await runUntilSignal(service.close);
      },
    );
};
