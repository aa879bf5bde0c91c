import {
  absoluteRange,
  parseContentRange,
  parseRangeHeader,
  parseRangeWithin,
  parseServedRange,
  unsatisfiedRangeSize,
} from './range';

describe('Range header', () => {
  it('parses single byte ranges', () => {
    expect(parseRangeHeader('bytes=0-99')).toEqual({ start: 0, end: 99 });
    expect(parseRangeHeader('bytes=100-')).toEqual({ start: 100 });
    expect(parseRangeHeader('bytes=-5')).toEqual({ suffix: 5 });
  });

  it('ignores what it does not serve', () => {
    for (const value of [undefined, 'items=0-1', 'bytes=0-1,5-6', 'bytes=-', 'bytes=a-b']) {
      expect(parseRangeHeader(value)).toBeUndefined();
    }
  });

  it('refuses impossible ranges', () => {
    expect(() => parseRangeHeader('bytes=5-2')).toThrow(
      expect.objectContaining({ code: 'RANGE_INVALID' }),
    );
    expect(() => parseRangeHeader('bytes=-0')).toThrow(
      expect.objectContaining({ code: 'RANGE_INVALID' }),
    );
  });

  it('makes suffix ranges absolute', () => {
    expect(absoluteRange({ suffix: 5 }, 100)).toEqual({ start: 95, end: 99 });
    expect(absoluteRange({ suffix: 500 }, 100)).toEqual({ start: 0, end: 99 });
    expect(absoluteRange({ start: 3 }, 100)).toEqual({ start: 3 });
    expect(absoluteRange(undefined, 100)).toBeUndefined();
  });
});

describe('Range header against a known size', () => {
  it('makes ranges absolute and cuts them at the end', () => {
    expect(parseRangeWithin('bytes=0-99', 1000)).toEqual({ start: 0, end: 99 });
    expect(parseRangeWithin('bytes=100-', 1000)).toEqual({ start: 100, end: 999 });
    expect(parseRangeWithin('bytes=990-2000', 1000)).toEqual({ start: 990, end: 999 });
    expect(parseRangeWithin('bytes=-5', 100)).toEqual({ start: 95, end: 99 });
    expect(parseRangeWithin('bytes=-500', 100)).toEqual({ start: 0, end: 99 });
  });

  it('ignores what it does not serve, and a range that ends before it starts', () => {
    for (const value of [undefined, 'items=0-1', 'bytes=0-1,5-6', 'bytes=-', 'bytes=5-2']) {
      expect(parseRangeWithin(value, 100)).toBeUndefined();
    }
  });

  it('refuses a range that starts at or past the end, naming the size', () => {
    for (const value of ['bytes=100-', 'bytes=-0', 'bytes=200-300']) {
      expect(() => parseRangeWithin(value, 100)).toThrow(
        expect.objectContaining({ code: 'RANGE_INVALID', detail: { size: 100 } }),
      );
    }
  });
});

describe('Content-Range header', () => {
  it('parses the OCI form and the HTTP form', () => {
    expect(parseContentRange('0-99')).toEqual({ start: 0, end: 99 });
    expect(parseContentRange('bytes 100-199/*')).toEqual({ start: 100, end: 199 });
    expect(parseContentRange('bytes 100-199/1000')).toEqual({ start: 100, end: 199 });
    expect(parseContentRange(undefined)).toBeUndefined();
  });

  it('refuses malformed ranges with RANGE_INVALID', () => {
    for (const value of ['abc', '5-2', 'bytes=1']) {
      expect(() => parseContentRange(value)).toThrow(
        expect.objectContaining({ code: 'RANGE_INVALID' }),
      );
    }
  });
});

describe("an answer's Content-Range", () => {
  it('reads the range served and the size, when the server names it', () => {
    expect(parseServedRange('bytes 0-9/1234')).toEqual({ start: 0, end: 9, size: 1234 });
    expect(parseServedRange('bytes 100-199/*')).toEqual({ start: 100, end: 199 });
    for (const value of [undefined, '', '0-9', 'bytes 0-9', 'bytes */1234', 'items 0-9/10']) {
      expect(parseServedRange(value)).toBeUndefined();
    }
  });

  it("reads the size of a 416's unsatisfied range", () => {
    expect(unsatisfiedRangeSize('bytes */1234')).toBe(1234);
    for (const value of [undefined, 'bytes 0-9/1234', 'bytes */*']) {
      expect(unsatisfiedRangeSize(value)).toBeUndefined();
    }
  });
});
