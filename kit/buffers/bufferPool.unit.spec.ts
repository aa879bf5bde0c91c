import { BufferPool, sharedPool } from './bufferPool';

describe('BufferPool', () => {
  it('hands out buffers of its size and reuses the ones given back', () => {
    const pool = new BufferPool(1024);
    const a = pool.take();
    const b = pool.take();
    expect([a.length, b.length, pool.taken, pool.allocated]).toEqual([1024, 1024, 2, 2]);
    expect(a.buffer).not.toBe(b.buffer);
    pool.give(a);
    expect(pool.take()).toBe(a);
    expect(pool.allocated).toBe(2);
  });

  it('refuses a buffer it did not hand out, or one given twice', () => {
    const pool = new BufferPool(16);
    const a = pool.take();
    pool.give(a);
    expect(() => pool.give(a)).toThrow();
    expect(() => pool.give(Buffer.alloc(16))).toThrow();
  });

  it('keeps at most maxFree buffers for reuse', () => {
    const pool = new BufferPool(8, { maxFree: 1 });
    const [a, b] = [pool.take(), pool.take()];
    pool.give(a);
    pool.give(b);
    expect(pool.take()).toBe(a);
    expect(pool.take()).not.toBe(b);
  });

  it('shares one pool per size in the process', () => {
    expect(sharedPool(4096)).toBe(sharedPool(4096));
    expect(sharedPool(4096)).not.toBe(sharedPool(8192));
  });
});
