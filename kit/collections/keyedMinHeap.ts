/**
 * A binary min-heap of values by numeric key: the smallest key first, ties in no particular
 * order. No decrease-key: a caller whose entry changes pushes it again and skips the stale
 * copy when it surfaces (the tracker's peer deadlines, the simulator's calendar and levels).
 */
export class KeyedMinHeap<T> {
  private readonly keys: number[] = [];
  private readonly values: T[] = [];

  get size(): number {
    return this.keys.length;
  }

  /** The smallest key; undefined when empty. */
  topKey(): number | undefined {
    return this.keys[0];
  }

  push(key: number, value: T): void {
    const { keys, values } = this;
    let i = keys.length;
    keys.push(key);
    values.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = keys[parent] as number;
      if (p <= key) break;
      keys[i] = p;
      values[i] = values[parent] as T;
      i = parent;
    }
    keys[i] = key;
    values[i] = value;
  }

  /** Removes and returns the value of the smallest key (undefined when empty). */
  pop(): T | undefined {
    const { keys, values } = this;
    if (keys.length === 0) return undefined;
    const top = values[0];
    const key = keys.pop() as number;
    const value = values.pop() as T;
    const n = keys.length;
    if (n === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && (keys[right] as number) < (keys[left] as number) ? right : left;
      const ck = keys[child] as number;
      if (ck >= key) break;
      keys[i] = ck;
      values[i] = values[child] as T;
      i = child;
    }
    keys[i] = key;
    values[i] = value;
    return top;
  }

  clear(): void {
    this.keys.length = 0;
    this.values.length = 0;
  }
}
