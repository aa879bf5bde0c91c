import { join } from 'node:path';
import { openSqliteEventLog } from '../../adapters/eventlog';
import type { ProgressReport } from '../../services/shared/progress';
import { cliPath, shoal, tempDir } from '../fixtures/cli';
import { randomDigest, randomRepo, tagPushed } from '../fixtures/events';
import { inTerminal, visibleLines } from '../fixtures/terminal';

// Long CLI work shows progress as a person at a terminal sees it: `shoal replay` run in a
// pseudo-terminal (script(1)) draws a bar with done/total, rate and ETA; the same command
// with its output piped stays quiet, and with --json reports JSON lines on stderr.
describe('progress of long CLI work', () => {
  const events = 30_000;
  let dir: ReturnType<typeof tempDir>;
  let dataDir: string;

  beforeAll(async () => {
    dir = tempDir('shoal-progress-e2e-');
    dataDir = join(dir.path, 'data');
    const created = shoal([
      'tags',
      'put',
      '--force',
      '--data-dir',
      dataDir,
      'p/app:v0',
      randomDigest(),
    ]);
    expect(created.status).toBe(0);
    const log = openSqliteEventLog(join(dataDir, 'log.db'), { durability: 'normal' });
    const repo = randomRepo();
    for (let at = 1; at < events; at += 1000) {
      const batch = Array.from({ length: Math.min(1000, events - at) }, (_, i) =>
        tagPushed({ repo, tag: `t${at + i}`, digest: randomDigest() }),
      );
      await log.append(batch);
    }
    await log.close();
  });
  afterAll(() => dir?.cleanup());

  /** `shoal replay --projection NAME …` in a pseudo-terminal; the lines left on the screen. */
  const replayOnTerminal = (projection: string, ...extra: string[]) => {
    const { status, screen } = inTerminal(process.execPath, [
      cliPath,
      'replay',
      '--data-dir',
      dataDir,
      '--projection',
      projection,
      ...extra,
    ]);
    expect(status).toBe(0);
    return { screen, lines: visibleLines(screen) };
  };

  it('on a terminal: a bar per projection, ending at the head with rate and ETA', () => {
    const { screen, lines } = replayOnTerminal('build-index');
    // Drawn in place: the cursor is hidden while it runs and shown again after.
    expect(screen).toContain('\u001b[?25l');
    expect(screen).toContain('\u001b[?25h');
    const bar = lines.find((line) => line.startsWith('replay build-index'));
    expect(bar).toMatch(
      new RegExp(
        `^replay build-index =+ 100% \\| ${events.toLocaleString('en-US')}/` +
          `${events.toLocaleString('en-US')} positions \\| [\\d,]+ positions/s \\| ETA 0s \\| \\d+s$`,
      ),
    );
    expect(lines).toContainEqual(
      expect.stringMatching(new RegExp(`^build-index: ${events} events to position ${events} in`)),
    );
  });

  it('piped: no bar, the result only; with --json: JSON lines of progress on stderr', () => {
    const piped = shoal(['replay', '--data-dir', dataDir, '--projection', 'tag-history']);
    expect(piped.status).toBe(0);
    expect(piped.stderr).not.toContain('\u001b[');
    expect(piped.stderr).not.toContain('positions/s');
    expect(piped.stdout).toMatch(new RegExp(`^tag-history: ${events} events to position`));

    const json = shoal(['replay', '--data-dir', dataDir, '--projection', 'tag-history', '--json']);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ projection: 'tag-history', events });
    const reports = json.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as ProgressReport);
    const last = reports[reports.length - 1] as ProgressReport;
    expect(last).toMatchObject({
      progress: 'replay tag-history',
      unit: 'positions',
      done: events,
      total: events,
      etaSeconds: 0,
      final: true,
    });
    expect(last.rate).toBeGreaterThan(0);
    expect(reports.slice(0, -1).every((r) => !r.final && r.total === events)).toBe(true);
  });

  it('replay --verify shows the scratch rebuild the same way', () => {
    const { lines } = replayOnTerminal('build-index', '--verify');
    expect(lines).toContainEqual(
      expect.stringMatching(/^verify build-index =+ 100% \| 30,000\/30,000 positions/),
    );
    expect(lines).toContainEqual(expect.stringMatching(/^build-index: OK at position 30000/));
  });
});
