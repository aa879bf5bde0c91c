#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerAgentCommands } from './commands/agent';
import { registerCertsCommands } from './commands/certs';
import { registerGcCommands } from './commands/gc';
import { registerLogCommands } from './commands/log';
import { registerOriginCommands } from './commands/origin';
import { registerPolicyCommands } from './commands/policies';
import { registerReplayCommand } from './commands/replay';
import { registerReplicationCommands } from './commands/replication';
import { registerRulesCommands } from './commands/rules';
import { registerServiceCommands } from './commands/services';
import { registerTagCommands } from './commands/tags';
import { registerTrackerCommands } from './commands/tracker';
import { guardOutputPipes, reportError } from './output';

/** Shoal's version from package.json, found from the source tree and from dist/ alike. */
const packageVersion = (): string => {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const parsed = JSON.parse(readFileSync(candidate, 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (parsed.name === 'shoal') return parsed.version ?? '0.0.0';
    }
  }
  return '0.0.0';
};

export const buildProgram = (): Command => {
  const program = new Command('shoal')
    .description('Shoal: a peer-to-peer OCI registry whose source of truth is an event log')
    .version(packageVersion())
    .showHelpAfterError()
    .exitOverride();
  registerServiceCommands(program);
  registerOriginCommands(program);
  registerTagCommands(program);
  registerLogCommands(program);
  registerReplayCommand(program);
  registerRulesCommands(program);
  registerReplicationCommands(program);
  registerGcCommands(program);
  registerPolicyCommands(program);
  registerTrackerCommands(program);
  registerAgentCommands(program);
  registerCertsCommands(program);
  return program;
};

export const main = async (argv: string[]): Promise<void> => {
  guardOutputPipes();
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; usage errors were already printed by commander.
      process.exitCode = error.exitCode;
      return;
    }
    reportError(error);
  }
};

if (require.main === module) {
  void main(process.argv);
}
