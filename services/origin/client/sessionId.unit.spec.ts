import { newSessionId, parseSessionId } from './sessionId';

describe('upload session ids', () => {
  it('name the origin and a random file, URL-safe', () => {
    const { id, file } = newSessionId('origin-1.eu:a');
    expect(id).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expect(parseSessionId(id)).toEqual({ originId: 'origin-1.eu:a', file });
    expect(newSessionId('origin-1.eu:a').id).not.toBe(id);
  });

  it('refuse what is not a session id', () => {
    for (const bad of ['', 'abc', 'a.b', `b3Jp.${'x'.repeat(21)}`, `b3Jp.${'x'.repeat(22)}/..`]) {
      expect(parseSessionId(bad)).toBeUndefined();
    }
    // A non-canonical base64url spelling of the origin id is not the same session.
    expect(parseSessionId(`YR.${'x'.repeat(22)}`)).toBeUndefined();
    expect(parseSessionId(`YQ.${'x'.repeat(22)}`)).toEqual({ originId: 'a', file: 'x'.repeat(22) });
  });
});
