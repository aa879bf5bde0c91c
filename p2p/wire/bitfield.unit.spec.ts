import { Bitfield } from './bitfield';

describe('Bitfield', () => {
  it('lays pieces out most significant bit first', () => {
    const field = new Bitfield(10);
    expect(field.set(0)).toBe(true);
    expect(field.set(2)).toBe(true);
    expect(field.set(9)).toBe(true);
    expect(field.set(9)).toBe(false);
    expect(field.toBuffer().toString('hex')).toBe('a040');
    expect(field.count).toBe(3);
    expect([...field.indices()]).toEqual([0, 2, 9]);
  });

  it('fills and clears, keeping spare bits zero', () => {
    const field = Bitfield.full(10);
    expect(field.toBuffer().toString('hex')).toBe('ffc0');
    expect(field.complete).toBe(true);
    expect(field.clear(1)).toBe(true);
    expect(field.has(1)).toBe(false);
    expect(field.count).toBe(9);
    expect(Bitfield.full(16).toBuffer().toString('hex')).toBe('ffff');
    expect(Bitfield.full(0).complete).toBe(true);
  });

  it('refuses bytes with spare bits set or of the wrong size', () => {
    expect(() => new Bitfield(10, Buffer.from('ffe0', 'hex'))).toThrow(RangeError);
    expect(() => new Bitfield(10, Buffer.from('ff', 'hex'))).toThrow(RangeError);
    expect(new Bitfield(10, Buffer.from('ffc0', 'hex')).count).toBe(10);
  });

  it('answers false for indices out of range and throws when setting them', () => {
    const field = new Bitfield(3);
    expect(field.has(3)).toBe(false);
    expect(field.has(-1)).toBe(false);
    expect(() => field.set(3)).toThrow(RangeError);
  });

  it('lists the indices set here and clear in another field, ascending', () => {
    const theirs = new Bitfield(20);
    const mine = new Bitfield(20);
    for (const i of [0, 3, 7, 8, 15, 19]) theirs.set(i);
    for (const i of [3, 8, 12]) mine.set(i);
    expect(theirs.missingFrom(mine)).toEqual([0, 7, 15, 19]);
    expect(mine.missingFrom(theirs)).toEqual([12]);
    expect(() => theirs.missingFrom(new Bitfield(21))).toThrow(RangeError);
  });
});
