import { describeEventLogContract } from '../../../test/contracts/eventLogContract';
import { createEventStoreDbEventLog } from './eventStoreDbEventLog';
import { createFakeEventStoreDbClient } from '../../../test/doubles/fakeEventStoreDbClient';

// The contract against an in-memory stand-in of the EventStoreDB client: it checks the
// adapter's own logic (stream and id mapping, idempotency, positions, resuming reads and
// subscriptions between records, filtering system events). It says nothing about a real
// server: that is eventStoreDbEventLog.int.spec.ts, run when SHOAL_ESDB_URL is set.
describeEventLogContract(
  'eventstoredb adapter over an in-memory fake client (not a server)',
  async () => {
    const client = createFakeEventStoreDbClient();
    client.systemEvent();
    const open = async () => createEventStoreDbEventLog({ client, pageSize: 64 });
    return { log: await open(), reopen: open };
  },
  {
    densePositions: false,
    liveDelayMs: 1000,
    persistent: true,
    atomicMultiStreamBatches: false,
  },
);
