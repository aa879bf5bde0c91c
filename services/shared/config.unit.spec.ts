import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { loadConfig, validateConfig } from './config';
import { closestMatch } from './configErrors';
import { configKeys, envName } from './configKeys';
import { roleConfig } from './roleConfig';

// A role-shaped schema: the shared fragment, a free map, a list of closed objects, a secret.
const schema = Type.Object({
  cluster: roleConfig.cluster(),
  listen: roleConfig.listen(5000),
  log: roleConfig.log(),
  origins: Type.Object({ urls: Type.Array(Type.String(), { default: [] }) }, { default: {} }),
  http: Type.Object(
    {
      headers: Type.Record(Type.String(), Type.String(), { default: {} }),
      password: Type.String({ default: '', maxLength: 4 }),
    },
    { default: {} },
  ),
  routes: Type.Array(
    Type.Object({ namespace: Type.String(), backend: Type.Object({ region: Type.String() }) }),
    { default: [] },
  ),
  scheduler: Type.Object(
    { requestTimeoutPerMiBMs: Type.Integer({ default: 4000 }) },
    { default: {} },
  ),
  logLevel: roleConfig.logLevel(),
});

const problemsOf = (value: unknown, source?: (path: readonly string[]) => string | undefined) => {
  try {
    validateConfig(schema, value, 'configuration', source);
  } catch (error) {
    return { code: (error as { code: string }).code, message: (error as Error).message };
  }
  throw new Error('expected CONFIG_INVALID');
};

describe('config loader: unknown keys and wrong values', () => {
  it('rejects a misspelt key, naming it and the closest valid one', () => {
    const { code, message } = problemsOf({ listen: { host: '127.0.0.1', prot: 21500 } });
    expect(code).toBe('CONFIG_INVALID');
    expect(message).toBe(
      'invalid configuration: listen.prot: unknown key; did you mean `listen.port`?',
    );
    expect(problemsOf({ orgins: { urls: [] } }).message).toContain(
      'orgins: unknown key; did you mean `origins`?',
    );
  });

  it('points at the right place for a key given at the wrong level', () => {
    expect(problemsOf({ port: 5000 }).message).toContain(
      'port: unknown key; did you mean `listen.port`?',
    );
  });

  it('lists the keys of the level when nothing is close', () => {
    expect(problemsOf({ listen: { zzzzzzzz: 1 } }).message).toContain(
      'listen.zzzzzzzz: unknown key (keys under listen: host, port)',
    );
  });

  it('lists every problem, one per line', () => {
    const { message } = problemsOf({ orgins: {}, listen: { prot: 1 } });
    expect(message.split('\n').slice(1, 3)).toEqual([
      '  orgins: unknown key; did you mean `origins`?',
      '  listen.prot: unknown key; did you mean `listen.port`?',
    ]);
  });

  it('lists the allowed values of an enumeration, with the likely one', () => {
    expect(problemsOf({ log: { adapter: 'kafak' } }).message).toBe(
      'invalid configuration: log.adapter: "kafak" is not one of sqlite, kafka, eventstoredb; ' +
        'did you mean `kafka`?',
    );
    expect(problemsOf({ logLevel: 'verbose' }).message).toContain(
      'logLevel: "verbose" is not one of fatal, error, warn, info, debug, trace, silent',
    );
  });

  it('checks the objects inside lists', () => {
    expect(
      problemsOf({ routes: [{ namespace: 'a/.*', backend: { regoin: 'x', region: 'y' } }] })
        .message,
    ).toContain('routes.0.backend.regoin: unknown key; did you mean `routes.0.backend.region`?');
  });

  it('keeps accepting any key of a free map', () => {
    const config = validateConfig(schema, { http: { headers: { Authorization: 'Bearer x' } } });
    expect(config.http.headers).toEqual({ Authorization: 'Bearer x' });
  });

  it('never shows the value of a key that may hold a secret', () => {
    const { message } = problemsOf({ http: { password: 'hunter2-secret' } });
    expect(message).toContain('http.password:');
    expect(message).not.toContain('hunter2');
  });

  it('names the variable a bad value came from', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-config-'));
    try {
      const file = join(dir, 'role.yaml');
      writeFileSync(file, 'listen: { port: 5000 }\n');
      expect(() => loadConfig(schema, { file, env: { SHOAL_LOG_ADAPTER: 'kafak' } })).toThrow(
        `invalid config file ${file}: log.adapter: "kafak" (from SHOAL_LOG_ADAPTER) is not one ` +
          'of sqlite, kafka, eventstoredb',
      );
      writeFileSync(file, 'listen: { prot: 5000 }\n');
      expect(() => loadConfig(schema, { file, env: {} })).toThrow(
        `invalid config file ${file}: listen.prot: unknown key; did you mean \`listen.port\`?`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('config keys', () => {
  it('derives readable variable names, binary units as one word', () => {
    expect(envName(['listen', 'port'])).toBe('SHOAL_LISTEN_PORT');
    expect(envName(['readYourWrites', 'timeoutMs'])).toBe('SHOAL_READ_YOUR_WRITES_TIMEOUT_MS');
    expect(envName(['p2p', 'scheduler', 'requestTimeoutPerMiBMs'])).toBe(
      'SHOAL_P2P_SCHEDULER_REQUEST_TIMEOUT_PER_MIB_MS',
    );
  });

  it('lists every leaf with its path, variable and default; free maps are file-only', () => {
    const keys = configKeys(schema);
    expect(keys.find((k) => k.path.join('.') === 'listen.port')).toMatchObject({
      env: 'SHOAL_LISTEN_PORT',
      default: 5000,
    });
    expect(keys.find((k) => k.path.join('.') === 'log.adapter')?.values).toEqual([
      'sqlite',
      'kafka',
      'eventstoredb',
    ]);
    expect(keys.find((k) => k.path.join('.') === 'http.headers')?.env).toBeUndefined();
    expect(keys.find((k) => k.path.join('.') === 'routes')?.env).toBeUndefined();
  });

  it('suggests only likely typos', () => {
    expect(closestMatch('prot', ['host', 'port'])).toBe('port');
    expect(closestMatch('replcias', ['replicas', 'urls'])).toBe('replicas');
    expect(closestMatch('banana', ['host', 'port'])).toBeUndefined();
  });
});
