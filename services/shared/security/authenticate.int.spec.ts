import type { AddressInfo } from 'node:net';
import { ShoalError } from '../../../domain';
import { createHttpApp } from '../http';
import { silentLogger } from '../logger';
import type { Authenticator, SecurityMode } from './authenticate';
import { auditOf, onBehalfOfHeaders, requireService } from './authenticate';
import type { ServiceRole, Subject } from './subject';

// The authenticator chain as createHttpApp installs it: a request's subject comes from the
// first authenticator that recognises its credentials (here: an `x-test-as` header standing in
// for a certificate or a token), guards read it, and the audit names who it was.

const byHeader = (name: string, kind: 'service' | 'user'): Authenticator => ({
  name,
  authenticate(request) {
    const value = request.headers[`x-${name}`];
    if (typeof value !== 'string') return undefined;
    if (value === 'bad') throw new ShoalError('UNAUTHORIZED', `${name}: bad credentials`);
    return kind === 'service'
      ? {
          kind: 'service',
          role: value.split('/')[0] as ServiceRole,
          name: value.split('/')[1] ?? '1',
          address: request.ip,
        }
      : { kind: 'user', name: value, groups: [], address: request.ip };
  },
});

const appWith = async (authenticators: Authenticator[], mode: SecurityMode = 'required') => {
  const { app } = createHttpApp({ service: 'test', logger: silentLogger(), authenticators });
  app.get('/whoami', async (request) => ({ subject: request.subject, audit: auditOf(request) }));
  app.get('/internal/x', async (request) => {
    requireService(request, mode);
    return { ok: true };
  });
  app.get('/internal/origin-only', async (request) => {
    requireService(request, mode, ['origin']);
    return { ok: true };
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const inject = async (request: { url: string; headers?: Record<string, string> }) => {
    const response = await fetch(`http://127.0.0.1:${port}${request.url}`, {
      headers: request.headers ?? {},
    });
    const body: unknown = await response.json();
    return { statusCode: response.status, json: () => body };
  };
  return { inject, close: () => app.close() };
};

const chain = [byHeader('service', 'service'), byHeader('user', 'user')];

describe('the authenticator chain (createHttpApp)', () => {
  it('makes a request without credentials anonymous, with its address', async () => {
    const app = await appWith([]);
    const res = await app.inject({ url: '/whoami' });
    expect(res.json()).toEqual({
      subject: { kind: 'anonymous', address: '127.0.0.1' },
      audit: { actor: 'anonymous', client: '127.0.0.1' },
    });
    await app.close();
  });

  it('takes the first authenticator that recognises the request, in order', async () => {
    const app = await appWith(chain);
    const both = await app.inject({
      url: '/whoami',
      headers: { 'x-service': 'proxy/1', 'x-user': 'alice' },
    });
    expect((both.json() as { subject: Subject }).subject).toMatchObject({
      kind: 'service',
      role: 'proxy',
    });
    const user = await app.inject({ url: '/whoami', headers: { 'x-user': 'alice' } });
    expect((user.json() as { audit: unknown }).audit).toEqual({
      actor: 'user:alice',
      client: '127.0.0.1',
    });
    await app.close();
  });

  it('answers 401 for credentials that do not check out (never anonymous)', async () => {
    const app = await appWith(chain);
    const res = await app.inject({ url: '/whoami', headers: { 'x-user': 'bad' } });
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ code: 'UNAUTHORIZED' });
    await app.close();
  });

  it('keeps internal APIs to cluster identities when security is required', async () => {
    const app = await appWith(chain, 'required');
    const status = async (url: string, headers: Record<string, string> = {}) =>
      (await app.inject({ url, headers })).statusCode;
    expect(await status('/internal/x')).toBe(401);
    expect(await status('/internal/x', { 'x-user': 'alice' })).toBe(403);
    expect(await status('/internal/x', { 'x-service': 'agent/h1' })).toBe(200);
    expect(await status('/internal/origin-only', { 'x-service': 'agent/h1' })).toBe(403);
    expect(await status('/internal/origin-only', { 'x-service': 'origin/1' })).toBe(200);
    await app.close();
  });

  it('lets everyone through in open mode', async () => {
    const app = await appWith(chain, 'open');
    expect((await app.inject({ url: '/internal/origin-only' })).statusCode).toBe(200);
    await app.close();
  });

  it('honours on-behalf-of headers only from a service subject', async () => {
    const app = await appWith(chain);
    const onBehalf = {
      [onBehalfOfHeaders.actor]: 'user:alice',
      [onBehalfOfHeaders.client]: '192.0.2.7',
    };
    const fromProxy = await app.inject({
      url: '/whoami',
      headers: { 'x-service': 'proxy/1', ...onBehalf },
    });
    expect((fromProxy.json() as { audit: unknown }).audit).toEqual({
      actor: 'user:alice',
      client: '192.0.2.7',
    });
    const fromUser = await app.inject({
      url: '/whoami',
      headers: { 'x-user': 'mallory', ...onBehalf },
    });
    expect((fromUser.json() as { audit: unknown }).audit).toEqual({
      actor: 'user:mallory',
      client: '127.0.0.1',
    });
    const malformed = await app.inject({
      url: '/whoami',
      headers: { 'x-service': 'proxy/1', [onBehalfOfHeaders.actor]: 'user:a b' },
    });
    expect((malformed.json() as { audit: unknown }).audit).toEqual({
      actor: 'service:proxy/1',
      client: '127.0.0.1',
    });
    await app.close();
  });
});
