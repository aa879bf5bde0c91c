import { runEventLogWorker } from '../../../test/contracts/fixtures/eventLogWorker';
import { openKafkaEventLog } from './kafkaEventLog';

// Entry of a worker process on the Kafka log, for the contract's cross-process tests (run
// with `node -r test/contracts/fixtures/register.js`). The location is `<brokers>/<topic>`,
// brokers comma-separated; the topic exists already (the test's first handle created it).
void runEventLogWorker((location) => {
  const slash = location.lastIndexOf('/');
  return openKafkaEventLog({
    brokers: location.slice(0, slash).split(','),
    topic: location.slice(slash + 1),
    createTopic: false,
    replicationFactor: 1,
  });
});
