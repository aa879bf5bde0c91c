import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { EventStoreDBClient } from '@eventstore/db-client';
import { describeEventLogContract } from '../../../test/contracts/eventLogContract';
import { createEventStoreDbEventLog } from './eventStoreDbEventLog';

// The EventLog contract against a real EventStoreDB, when SHOAL_ESDB_URL names one
// (`esdb://127.0.0.1:2113?tls=false`). Without it the contract is NOT run, says so loudly,
// and registers only skipped tests: it never counts as passed.
const url = process.env.SHOAL_ESDB_URL;

if (url === undefined || url === '') {
  const docker = existsSync('/var/run/docker.sock')
    ? 'a Docker engine is present, but starting EventStoreDB through testcontainers is not ' +
      'implemented yet'
    : 'no EventStoreDB server can be installed on this machine and there is no Docker engine ' +
      'for testcontainers';
  const why = `set SHOAL_ESDB_URL=esdb://host:2113?tls=false to run it (${docker})`;
  console.warn(`!!! EventStoreDB contract NOT RUN: ${why}`);
  describe.skip(`EventLog contract: eventstoredb — NOT RUN: ${why}`, () => {
    it('is not run', () => undefined);
  });
} else {
  // Every test writes under its own stream prefix on one shared database: a fresh, empty log.
  describeEventLogContract(
    'eventstoredb',
    async () => {
      const streamPrefix = `shoal-test-${randomBytes(6).toString('hex')}-`;
      const open = async () =>
        createEventStoreDbEventLog({
          client: EventStoreDBClient.connectionString(url),
          streamPrefix,
          pageSize: 64,
          disposeClient: true,
        });
      return { log: await open(), location: `${url}#${streamPrefix}`, reopen: open };
    },
    {
      densePositions: false,
      // The server pushes filtered $all events as they are committed; the rest is slack.
      liveDelayMs: 2000,
      persistent: true,
      atomicMultiStreamBatches: false,
    },
  );
}
