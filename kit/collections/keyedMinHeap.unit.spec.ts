import { KeyedMinHeap } from './keyedMinHeap';

describe('KeyedMinHeap', () => {
  it('pops values in key order, whatever order they were pushed in', () => {
    const heap = new KeyedMinHeap<string>();
    let seed = 5;
    const keys = Array.from({ length: 500 }, () => {
      seed = (seed * 16807) % 2147483647;
      return seed % 1000;
    });
    for (const key of keys) heap.push(key, `v${key}`);
    expect(heap.size).toBe(500);
    expect(heap.topKey()).toBe(Math.min(...keys));
    const out: number[] = [];
    while (heap.size > 0) out.push(Number((heap.pop() as string).slice(1)));
    expect(out).toEqual([...keys].sort((a, b) => a - b));
  });

  it('is empty after clear, and an empty heap pops undefined', () => {
    const heap = new KeyedMinHeap<number>();
    heap.push(2, 2);
    heap.push(1, 1);
    heap.clear();
    expect(heap.size).toBe(0);
    expect(heap.pop()).toBeUndefined();
    expect(heap.topKey()).toBeUndefined();
    heap.push(3, 30);
    expect(heap.pop()).toBe(30);
  });
});
