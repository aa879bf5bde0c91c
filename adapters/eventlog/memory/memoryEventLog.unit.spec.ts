import type { RecordedEvent } from '../../../domain';
import { describeEventLogContract } from '../../../test/contracts/eventLogContract';
import { tagPushed } from '../../../test/fixtures/events';
import { createMemoryEventLog } from './memoryEventLog';

describeEventLogContract('memory', async () => ({ log: createMemoryEventLog({ pageSize: 64 }) }), {
  densePositions: true,
  liveDelayMs: 100,
});

describe('memory EventLog', () => {
  it('hands out frozen copies: a reader cannot change what the log holds', async () => {
    const log = createMemoryEventLog();
    const event = tagPushed();
    await log.append([event]);
    const [read] = (await log.readBatch(1)) as RecordedEvent<'TagPushed'>[];
    expect(() => {
      (read?.data as { tag: string }).tag = 'changed';
    }).toThrow(TypeError);
    (event.data as { tag: string }).tag = 'changed-after-append';
    expect((await log.readBatch(1))[0]?.data).toMatchObject({ tag: read?.data.tag });
    await log.close();
  });
});
