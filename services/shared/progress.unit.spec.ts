import { PassThrough } from 'node:stream';
import type { ProgressReport } from './progress';
import { createProgress, formatAmount, formatDuration, progressMode } from './progress';

const capture = (isTTY: boolean) => {
  const stream = Object.assign(new PassThrough(), { isTTY, columns: 200 });
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return { stream, text: () => text };
};

describe('progress', () => {
  it('picks JSON lines with --json, a bar on a terminal, and nothing otherwise', () => {
    expect(progressMode({ json: true, stream: { isTTY: true } })).toBe('json');
    expect(progressMode({ stream: { isTTY: true } })).toBe('bar');
    expect(progressMode({ stream: { isTTY: false } })).toBe('quiet');
    expect(progressMode({ stream: {} })).toBe('quiet');
  });

  it('JSON lines: at most one per interval, then a final one with done, total, rate, ETA', () => {
    let now = 0;
    const out = capture(false);
    const progress = createProgress({
      label: 'replay build-index',
      unit: 'positions',
      total: 1000,
      mode: 'json',
      stream: out.stream,
      now: () => now,
    });
    for (let second = 1; second <= 4; second++) {
      // Ten updates a second, one line a second.
      for (let tick = 1; tick <= 10; tick++) {
        now = (second - 1) * 1000 + tick * 100;
        progress.increment(10);
      }
    }
    progress.stop();
    progress.stop();
    const lines = out
      .text()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as ProgressReport);
    expect(lines.length).toBeGreaterThanOrEqual(4);
    expect(lines.length).toBeLessThanOrEqual(6);
    const last = lines[lines.length - 1] as ProgressReport;
    expect(last).toMatchObject({
      progress: 'replay build-index',
      unit: 'positions',
      done: 400,
      total: 1000,
      final: true,
      elapsedSeconds: 4,
    });
    // 100 a second: 600 left take six seconds.
    expect(last.rate).toBeCloseTo(100, 0);
    expect(last.etaSeconds).toBeCloseTo(6, 0);
    expect(lines.slice(0, -1).every((line) => !line.final)).toBe(true);
  });

  it('a bar: label, percentage, amounts, rate and ETA on one redrawn line', () => {
    let now = 0;
    const out = capture(true);
    const progress = createProgress({
      label: 'pull',
      unit: 'bytes',
      total: 4 * 1024 * 1024,
      mode: 'bar',
      stream: out.stream,
      now: () => now,
    });
    now = 2000;
    progress.update(1024 * 1024);
    progress.stop();
    const text = out.text();
    expect(text).toContain('pull ');
    expect(text).toContain('25% | 1.0 MiB/4.0 MiB | 512.0 KiB/s | ETA 6s');
    // Redrawn in place: carriage movements, no newline until it stops.
    expect(text.trimEnd().split('\n')).toHaveLength(1);
  });

  it('quiet writes nothing', () => {
    const out = capture(false);
    const progress = createProgress({ label: 'x', unit: 'events', total: 3, mode: 'quiet' });
    progress.increment(3);
    progress.stop();
    expect(out.text()).toBe('');
  });

  it('formats amounts and durations for people', () => {
    expect(formatAmount(1536, 'bytes')).toBe('1.5 KiB');
    expect(formatAmount(512, 'bytes')).toBe('512 B');
    expect(formatAmount(1234567, 'events')).toBe('1,234,567');
    expect(formatDuration(75)).toBe('1m15s');
    expect(formatDuration(7300)).toBe('2h01m');
    expect(formatDuration(undefined)).toBe('?');
  });
});
