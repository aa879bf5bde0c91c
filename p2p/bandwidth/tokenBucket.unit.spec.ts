import { createThrottle } from './throttle';
import { TokenBucket, defaultBurstOf } from './tokenBucket';

const KiB = 1024;

/** Lets resolved promises run. */
const settle = async () => {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
};

describe('TokenBucket (fake time)', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  const bucket = (rate: number, burst?: number) =>
    new TokenBucket({ rate, burst, now: () => Date.now() });

  it('never waits at rate 0', async () => {
    const unlimited = bucket(0);
    expect(unlimited.tryTake(10 * 1024 * KiB)).toBe(true);
    await expect(unlimited.take(10 * 1024 * KiB)).resolves.toBeUndefined();
    expect(unlimited.granted).toBe(20 * 1024 * KiB);
  });

  it('starts full, then refills continuously at the rate', async () => {
    const limiter = bucket(100 * KiB, 10 * KiB);
    expect(limiter.tryTake(10 * KiB)).toBe(true);
    expect(limiter.tryTake(1)).toBe(false);
    let done = false;
    void limiter.take(5 * KiB).then(() => (done = true));
    jest.advanceTimersByTime(45);
    await settle();
    expect(done).toBe(false);
    jest.advanceTimersByTime(10);
    await settle();
    expect(done).toBe(true);
  });

  it('debits bytes already read into debt, and says how long until a burst can follow', () => {
    const limiter = bucket(100 * KiB, 20 * KiB);
    expect(limiter.debit(15 * KiB, 10 * KiB)).toBe(0); // 5 KiB left: no debt
    // 10 KiB more: 5 KiB of debt; 10 KiB to come back to is 15 KiB at 100 KiB/s = 150 ms.
    expect(limiter.debit(10 * KiB, 10 * KiB)).toBe(150);
    expect(limiter.granted).toBe(25 * KiB);
    jest.advanceTimersByTime(150);
    expect(limiter.tryTake(10 * KiB)).toBe(true);
    // The resume point is capped by the burst; unlimited never waits.
    expect(limiter.debit(20 * KiB, 1024 * KiB)).toBe(400);
    expect(bucket(0).debit(1024 * KiB, KiB)).toBe(0);
  });

  it('serves waiters first come, first served; later small takes do not overtake', async () => {
    const limiter = bucket(100 * KiB, 10 * KiB);
    limiter.tryTake(10 * KiB);
    const order: string[] = [];
    void limiter.take(8 * KiB).then(() => order.push('big'));
    void limiter.take(1 * KiB).then(() => order.push('small'));
    expect(limiter.tryTake(1)).toBe(false);
    jest.advanceTimersByTime(200);
    await settle();
    expect(order).toEqual(['big', 'small']);
  });

  it('grants a take larger than the burst when full and charges it in full', async () => {
    const limiter = bucket(100 * KiB, 10 * KiB);
    let first = false;
    let second = false;
    void limiter.take(50 * KiB).then(() => (first = true));
    await settle();
    expect(first).toBe(true); // bucket was full
    void limiter.take(1 * KiB).then(() => (second = true));
    jest.advanceTimersByTime(400); // 40 KiB of debt not yet repaid
    await settle();
    expect(second).toBe(false);
    jest.advanceTimersByTime(120);
    await settle();
    expect(second).toBe(true);
  });

  it('drops an aborted waiter and lets the next one go', async () => {
    const limiter = bucket(10 * KiB, 10 * KiB);
    limiter.tryTake(10 * KiB);
    const abort = new AbortController();
    const aborted = limiter.take(10 * KiB, abort.signal);
    let next = false;
    void limiter.take(1 * KiB).then(() => (next = true));
    abort.abort(new Error('connection closed'));
    await expect(aborted).rejects.toThrow('connection closed');
    jest.advanceTimersByTime(110);
    await settle();
    expect(next).toBe(true);
    expect(limiter.waiting).toBe(0);
  });

  it('can be reconfigured while waiters queue', async () => {
    const limiter = bucket(1 * KiB, 1 * KiB);
    limiter.tryTake(1 * KiB);
    let done = false;
    void limiter.take(100 * KiB).then(() => (done = true));
    limiter.configure({ rate: 0 });
    await settle();
    expect(done).toBe(true);
  });

  it('defaults the burst to a tenth of a second, at least 512 KiB', () => {
    expect(defaultBurstOf(6 * 1024 * KiB)).toBe(Math.ceil((6 * 1024 * KiB) / 10));
    expect(defaultBurstOf(1 * 1024 * KiB)).toBe(512 * KiB);
    expect(new TokenBucket({ rate: 0 }).burst).toBe(512 * KiB);
  });
});

describe('createThrottle', () => {
  it('passes every byte through, in order, in bounded chunks', async () => {
    const throttle = createThrottle(new TokenBucket({ rate: 0 }), { chunkSize: 1000 });
    const input = Buffer.from(Array.from({ length: 5500 }, (_, i) => i % 251));
    const out: Buffer[] = [];
    throttle.on('data', (chunk: Buffer) => out.push(chunk));
    throttle.end(input);
    await new Promise((r) => throttle.on('end', r));
    expect(Buffer.concat(out).equals(input)).toBe(true);
    expect(Math.max(...out.map((c) => c.length))).toBe(1000);
  });
});
