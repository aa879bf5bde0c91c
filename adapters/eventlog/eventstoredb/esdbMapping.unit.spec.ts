import { ShoalError } from '../../../domain';
import { translateEsdbError } from './esdbErrors';
import { esdbEventId } from './eventStoreDbEventLog';

const clientError = (type: string, message = type) =>
  Object.assign(new Error(message), { type }) as Error & { type: string };

describe('EventStoreDB mapping', () => {
  it('given a UUID id, then EventStoreDB gets it as is (lower case)', () => {
    expect(esdbEventId('0B5C6A0E-6F2B-4C8F-9E2D-1A2B3C4D5E6F')).toBe(
      '0b5c6a0e-6f2b-4c8f-9e2d-1a2b3c4d5e6f',
    );
  });

  it('given another id, then a stable version-5-layout UUID of it', () => {
    const id = esdbEventId('k-b12-3');
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(esdbEventId('k-b12-3')).toBe(id);
    expect(esdbEventId('k-b12-4')).not.toBe(id);
  });

  it('given client errors, then Shoal codes', () => {
    for (const type of ['unavailable', 'deadline-exceeded', 'not-leader']) {
      expect(translateEsdbError(clientError(type), 'appending')).toMatchObject({
        code: 'LOG_UNAVAILABLE',
        retriable: true,
      });
    }
    expect(translateEsdbError(clientError('access-denied'), 'x')).toMatchObject({
      code: 'LOG_UNAVAILABLE',
      retriable: false,
    });
    expect(translateEsdbError(clientError('maximum-append-size-exceeded'), 'x')).toMatchObject({
      code: 'EVENT_INVALID',
    });
    expect(translateEsdbError(clientError('stream-deleted'), 'x')).toMatchObject({
      code: 'LOG_CORRUPT',
    });
    const own = new ShoalError('LOG_CLOSED', 'closed');
    expect(translateEsdbError(own, 'x')).toBe(own);
  });
});
