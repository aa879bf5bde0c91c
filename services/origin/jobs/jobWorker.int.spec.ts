import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../shared/clock';
import { silentLogger } from '../../shared/logger';
import type { JobRow, OriginDb } from '../store/originDb';
import { openOriginDb } from '../store/originDb';
import type { JobHandler, JobOutcome } from './jobWorker';
import { createJobWorker } from './jobWorker';

/** A handler scripted per call; `calls(n)` resolves once it was called n times. */
const scripted = (script: Array<JobOutcome | Error | 'hang'>) => {
  const seen: JobRow[] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const handler: JobHandler = async (job, signal) => {
    seen.push(job);
    for (const w of waiters.filter((w) => w.n <= seen.length)) w.resolve();
    const step = script[Math.min(seen.length - 1, script.length - 1)];
    if (step === 'hang') {
      await new Promise((_, reject) =>
        signal.addEventListener('abort', () => reject(new Error('aborted'))),
      );
    }
    if (step instanceof Error) throw step;
    return step as JobOutcome;
  };
  return {
    handler,
    seen,
    calls: (n: number) =>
      new Promise<void>((resolve) => {
        if (seen.length >= n) resolve();
        else waiters.push({ n, resolve });
      }),
  };
};

describe('job worker (durable queue in SQLite)', () => {
  let dir: string;
  let db: OriginDb;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-jobs-'));
    db = openOriginDb(join(dir, 'origin.db'));
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const worker = (handler: JobHandler, outcomes: string[] = [], startDelayMs = 0) =>
    createJobWorker({
      db,
      handlers: { 'write-back': handler, place: handler },
      clock: systemClock,
      logger: silentLogger(),
      concurrency: 2,
      minBackoffMs: 5,
      maxBackoffMs: 20,
      startDelayMs,
      onOutcome: (_kind, outcome) => outcomes.push(outcome),
    });

  const job = (digest: string) => ({
    kind: 'write-back' as const,
    digest,
    target: 'fs',
    eventId: `e-${digest}`,
  });

  it('retries a failing job with backoff until it succeeds, then forgets it', async () => {
    const h = scripted([new Error('down'), new Error('down'), 'done']);
    const outcomes: string[] = [];
    const w = worker(h.handler, outcomes);
    db.enqueue([job('d1')], systemClock.now());
    w.start();
    await h.calls(3);
    await w.stop();
    expect(outcomes).toEqual(['failed', 'failed', 'done']);
    expect(h.seen.map((j) => j.attempts)).toEqual([0, 1, 2]);
    expect(db.jobsOf('d1')).toEqual([]);
  });

  it('enqueues idempotently per kind, digest and target', () => {
    db.enqueue([job('d2'), job('d2')], systemClock.now());
    db.enqueue([job('d2'), { ...job('d2'), target: 'other' }], systemClock.now());
    expect(db.jobsOf('d2').map((j) => j.target)).toEqual(['fs', 'other']);
  });

  it('keeps a job that was running when the worker stopped, and runs it on the next start', async () => {
    const hanging = scripted(['hang']);
    const first = worker(hanging.handler);
    db.enqueue([job('d3')], systemClock.now());
    first.start();
    await hanging.calls(1);
    await first.stop();
    expect(db.jobsOf('d3')).toHaveLength(1);
    expect(db.jobsOf('d3')[0]?.attempts).toBe(0);

    // A new worker on a reopened database (as after a restart) finishes it.
    db.close();
    db = openOriginDb(join(dir, 'origin.db'));
    const fine = scripted(['done']);
    const second = worker(fine.handler);
    second.start();
    await fine.calls(1);
    await second.stop();
    expect(db.jobsOf('d3')).toEqual([]);
  });

  it('waits for the start delay, and wakes at once for new jobs', async () => {
    const h = scripted(['done']);
    const w = worker(h.handler, [], 60_000);
    db.enqueue([job('d4')], systemClock.now());
    w.start();
    w.wake();
    expect(h.seen).toHaveLength(0);
    await w.stop();

    const now = worker(h.handler);
    now.start();
    db.enqueue([job('d5')], systemClock.now());
    now.wake();
    await h.calls(2);
    await now.stop();
    expect(h.seen.map((j) => j.digest).sort()).toEqual(['d4', 'd5']);
  });

  it('holds write-back while the origin is busy; placement goes on', async () => {
    const h = scripted(['done']);
    let busyFor = 60_000;
    const w = createJobWorker({
      db,
      handlers: { 'write-back': h.handler, place: h.handler },
      clock: systemClock,
      logger: silentLogger(),
      concurrency: 2,
      minBackoffMs: 5,
      maxBackoffMs: 20,
      holdBack: { kinds: ['write-back'], delay: () => busyFor, maxHoldMs: 60_000 },
    });
    db.enqueue(
      [job('d7'), { kind: 'place', digest: 'd7', target: 'o2', eventId: 'r-d7' }],
      systemClock.now(),
    );
    w.start();
    // A worker picks jobs synchronously when it looks: only the placement ran.
    expect(h.seen.map((j) => j.kind)).toEqual(['place']);
    busyFor = 0;
    w.wake();
    await h.calls(2);
    await w.stop();
    expect(h.seen.map((j) => j.kind)).toEqual(['place', 'write-back']);
  });

  it('runs a held write-back anyway once it waited its longest', async () => {
    const h = scripted(['done']);
    const w = createJobWorker({
      db,
      handlers: { 'write-back': h.handler, place: h.handler },
      clock: systemClock,
      logger: silentLogger(),
      concurrency: 2,
      minBackoffMs: 5,
      maxBackoffMs: 20,
      holdBack: { kinds: ['write-back'], delay: () => 60_000, maxHoldMs: 1000 },
    });
    db.enqueue([job('d8')], systemClock.now() - 2000);
    db.enqueue([job('d9')], systemClock.now());
    w.start();
    expect(h.seen.map((j) => j.digest)).toEqual(['d8']);
    await h.calls(1);
    await w.stop();
    expect(db.jobsOf('d9')).toHaveLength(1);
  });

  it('ends a job the handler drops', async () => {
    const h = scripted(['dropped']);
    const outcomes: string[] = [];
    const w = worker(h.handler, outcomes);
    db.enqueue([job('d6')], systemClock.now());
    w.start();
    await h.calls(1);
    await w.stop();
    expect(outcomes).toEqual(['dropped']);
    expect(db.jobsOf('d6')).toEqual([]);
  });
});
