import { createMemoryEventLog } from '../../adapters/eventlog';
import { ringMembers, ringStream } from '../../domain';
import { originJoined } from '../../test/fixtures/events';
import { leaveRing } from './main';

// `shoal origin leave`: an id not on the ring is an error, and the last origin stays unless
// forced (an empty ring stores and serves no blob).

const clock = { now: () => Date.now() };

describe('leaving the ring', () => {
  it('refuses an unknown id and the last member; takes a member off otherwise', async () => {
    const log = createMemoryEventLog();
    await log.append([originJoined({ originId: '1', address: 'http://127.0.0.1:1' })]);
    const leave = (id: string, force = false) =>
      leaveRing({ log, clock, cluster: 'test', id, force });

    await expect(leave('9')).rejects.toMatchObject({
      code: 'NAME_UNKNOWN',
      message: 'origin "9" is not on the ring (members: 1; see `shoal origin ring`)',
    });
    await expect(leave('1')).rejects.toMatchObject({ code: 'PARAMETER_INVALID' });
    await expect(leave('1')).rejects.toThrow(/only origin on the ring.*--force/);

    await log.append([originJoined({ originId: '2', address: 'http://127.0.0.1:2' })]);
    expect(await leave('1')).toBeGreaterThan(0);
    expect(ringMembers(await log.readStream(ringStream)).map((m) => m.id)).toEqual(['2']);
    await expect(leave('2')).rejects.toThrow(/only origin/);
    await leave('2', true);
    expect(ringMembers(await log.readStream(ringStream))).toEqual([]);
    await expect(leave('2', true)).rejects.toMatchObject({ code: 'NAME_UNKNOWN' });
  });
});
