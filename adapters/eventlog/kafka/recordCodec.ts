import type { IHeaders, Message } from 'kafkajs';
import type { ShoalEvent } from '../../../domain';
import type { BatchFrame } from './logIndex';
import { batchHeader, expectHeader, formatHeader, kafkaLogFormat } from './logIndex';

/**
 * One Shoal batch as Kafka messages, framed as `logIndex.ts` describes. `expect` is the
 * stream version a conditional append expects (-1: no stream), undefined for an
 * unconditional one.
 */
export const encodeBatch = (
  batchId: string,
  events: readonly ShoalEvent[],
  expect: number | undefined,
): Message[] =>
  events.map((event, seq) => {
    const headers: IHeaders = { [batchHeader]: `${batchId}/${seq}/${events.length}` };
    if (seq === 0) {
      headers[formatHeader] = String(kafkaLogFormat);
      if (expect !== undefined) headers[expectHeader] = String(expect);
    }
    return { key: event.id, value: JSON.stringify(event), headers };
  });

const text = (value: IHeaders[string]): string | undefined => {
  const one = Array.isArray(value) ? value[0] : value;
  if (one === undefined) return undefined;
  return typeof one === 'string' ? one : one.toString('utf8');
};

const integer = (value: string | undefined): number | undefined => {
  if (value === undefined || !/^-?\d+$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
};

/** The frame of a record, or undefined when its headers are not a valid Shoal frame. */
export const decodeFrame = (headers: IHeaders | undefined): BatchFrame | undefined => {
  const raw = headers === undefined ? undefined : text(headers[batchHeader]);
  if (raw === undefined) return undefined;
  const parts = raw.split('/');
  if (parts.length !== 3) return undefined;
  const [batchId, seqText, countText] = parts as [string, string, string];
  const seq = integer(seqText);
  const count = integer(countText);
  if (batchId === '' || seq === undefined || count === undefined) return undefined;
  if (seq < 0 || count < 1 || seq >= count) return undefined;
  const expectText = text(headers?.[expectHeader]);
  const expect = integer(expectText);
  // A condition that cannot be read must not turn into an unconditional append.
  if (expectText !== undefined && (expect === undefined || expect < -1)) return undefined;
  const format = integer(text(headers?.[formatHeader]));
  return {
    batchId,
    seq,
    count,
    ...(expect === undefined ? {} : { expect }),
    ...(format === undefined ? {} : { format }),
  };
};
