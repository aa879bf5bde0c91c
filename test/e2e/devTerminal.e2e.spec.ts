import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { cliPath, tempDir } from '../fixtures/cli';

// shoal dev at a terminal, on a real pseudo-terminal (Python's pty module, test/fixtures/
// ptyRun.py): readable output, the summary last, and Ctrl-C stopping the cluster.

const ptyRun = join(__dirname, '../fixtures/ptyRun.py');
// eslint-disable-next-line no-control-regex
const plain = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r/g, '');

/** Runs `shoal dev …` on a pseudo-terminal, types Ctrl-C after its summary, returns it all. */
const devOnTerminal = (args: string[], env: NodeJS.ProcessEnv = {}) => {
  const dir = tempDir('shoal-pty-');
  try {
    const result = spawnSync(
      'python3',
      [ptyRun, 'Ctrl-C stops the cluster', '90', process.execPath, cliPath, 'dev', ...args],
      {
        encoding: 'utf8',
        env: { ...process.env, SHOAL_LOG_LEVEL: '', SHOAL_LOG_FORMAT: '', ...env },
        cwd: dir.path,
        timeout: 120_000,
      },
    );
    if (result.status !== 0) throw new Error(`ptyRun failed: ${result.stderr}`);
    const run = JSON.parse(result.stdout) as { output: string; ready: boolean; status: number };
    return { ...run, output: plain(run.output), dataDir: join(dir.path, '.shoal') };
  } finally {
    dir.cleanup();
  }
};

const summaryStart = '!!! shoal dev: ACCESS IS OPEN';

describe('shoal dev on a terminal', () => {
  it('is quiet by default: the summary, then Ctrl-C stops it with exit 0', () => {
    const run = devOnTerminal(['--port-base', '0']);
    expect(run.ready).toBe(true);
    expect(run.status).toBe(0);
    // Nothing but the summary before Ctrl-C: no JSON, no info lines.
    expect(run.output.startsWith(summaryStart)).toBe(true);
    expect(run.output).not.toMatch(/^\{/m);
    expect(run.output).not.toMatch(/INFO/);
    expect(run.output).toMatch(/^ {2}proxy {8}http:\/\/127\.0\.0\.1:\d+ /m);
    expect(run.output).toContain('logs: warn and worse (--log-level info for more)');
  }, 150_000);

  it('prints readable log lines with --log-level info (or SHOAL_LOG_LEVEL), the summary last', () => {
    for (const run of [
      devOnTerminal(['--port-base', '0', '--log-level', 'info']),
      devOnTerminal(['--port-base', '0'], { SHOAL_LOG_LEVEL: 'info' }),
    ]) {
      expect(run.status).toBe(0);
      const summary = run.output.indexOf(summaryStart);
      expect(summary).toBeGreaterThan(0);
      const before = run.output.slice(0, summary);
      const after = run.output.slice(summary);
      // pino-pretty lines: `[hh:mm:ss.mmm] INFO: proxy: proxy listening {"url":…}`.
      expect(before).toMatch(/^\[\d{2}:\d{2}:\d{2}\.\d{3}\] INFO: proxy: proxy listening/m);
      expect(before).toMatch(/INFO: origin: joined the ring/);
      expect(run.output).not.toMatch(/^\{"level"/m);
      // Every start-up line comes before the summary: after it, only the shutdown.
      const summaryEnd = after.indexOf('Ctrl-C stops the cluster');
      expect(after.slice(0, summaryEnd)).not.toMatch(/INFO:/);
      expect(after.slice(summaryEnd)).not.toMatch(/listening/);
    }
  }, 300_000);
});
