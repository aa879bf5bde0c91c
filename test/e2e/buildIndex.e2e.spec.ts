import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Service } from '../fixtures/cli';
import { shoal, shoalAsync, startService, tempDir } from '../fixtures/cli';
import { manifestsOnLog } from '../fixtures/dataDirLog';
import { randomDigest, randomRepo } from '../fixtures/events';
import { serviceFetch, testSecurityOn } from '../fixtures/security';

const listening = /build-index listening on (http:\/\/\S+)/;

describe('build-index service and the shoal CLI on one data directory', () => {
  let dir: ReturnType<typeof tempDir>;
  let service: Service;

  beforeAll(async () => {
    dir = tempDir();
    service = await startService(
      ['build-index', '--data-dir', dir.path, '--port', '0'],
      listening,
      { SHOAL_READ_YOUR_WRITES_TIMEOUT_MS: '300', SHOAL_LOG_LEVEL: 'warn' },
    );
  });
  afterAll(async () => {
    await service?.stop();
    dir?.cleanup();
  });

  it('puts a tag over HTTP and reads it back at once, with its position', async () => {
    const repo = randomRepo('e2e/app');
    const [digest] = (await manifestsOnLog(dir.path, repo)) as [string];
    const put = await serviceFetch(`${service.url}/v1/repositories/${repo}/tags/v1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ digest }),
    });
    expect(put.status).toBe(201);
    const position = Number(put.headers.get('shoal-position'));
    expect(position).toBeGreaterThan(0);

    const get = await fetch(`${service.url}/v1/repositories/${repo}/tags/v1`);
    expect(get.status).toBe(200);
    expect(await get.json()).toMatchObject({ repo, tag: 'v1', digest, position });
  });

  it('moves a tag and answers what it pointed to at an earlier position and time', async () => {
    const repo = randomRepo('e2e/app');
    const [first, second] = (await manifestsOnLog(dir.path, repo, 2)) as [string, string];
    const put1 = shoal(['tags', 'put', `${repo}:latest`, first, '--url', service.url, '--json']);
    expect(put1.status).toBe(0);
    const p1 = JSON.parse(put1.stdout).position as number;
    const between = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20)); // distinct timestamps for the time query
    const put2 = shoal([
      'tags',
      'put',
      `${repo}:latest`,
      second,
      '--url',
      service.url,
      '--json',
      '--force',
    ]);
    expect(JSON.parse(put2.stdout)).toMatchObject({ changed: true });

    expect(shoal(['tags', 'get', `${repo}:latest`, '--url', service.url]).stdout.trim()).toBe(
      second,
    );
    expect(
      shoal([
        'tags',
        'get',
        `${repo}:latest`,
        '--at',
        String(p1),
        '--url',
        service.url,
      ]).stdout.trim(),
    ).toBe(first);
    expect(
      shoal(['tags', 'get', `${repo}:latest`, '--at', between, '--url', service.url]).stdout.trim(),
    ).toBe(first);

    const history = JSON.parse(
      shoal(['tags', 'history', `${repo}:latest`, '--json', '--url', service.url]).stdout,
    ).history;
    expect(history.map((h: { digest: string }) => h.digest)).toEqual([first, second]);
    // The change names the caller (the CLI's cluster identity, or anonymous when access is
    // open) and its address.
    expect(history[1]).toMatchObject({
      kind: 'pushed',
      previous: first,
      actor: testSecurityOn ? expect.stringMatching(/^service:cli\//) : 'anonymous',
      client: '127.0.0.1',
    });
  });

  it('sees a write made by the CLI process on the data directory (read-your-writes)', async () => {
    const repo = randomRepo('e2e/app');
    const [digest] = (await manifestsOnLog(dir.path, repo)) as [string];
    const put = await shoalAsync([
      'tags',
      'put',
      `${repo}:v2`,
      digest,
      '--data-dir',
      dir.path,
      '--json',
      '--force',
    ]);
    expect(put.stderr).toBe('');
    const position = JSON.parse(put.stdout).position as number;
    const get = await fetch(`${service.url}/v1/repositories/${repo}/tags/v2`, {
      headers: { 'Shoal-Min-Position': String(position) },
    });
    expect(get.status).toBe(200);
    expect(((await get.json()) as { digest: string }).digest).toBe(digest);
  });

  it('answers 503 with a clear message when a minimum position is not reached in time', async () => {
    const get = await fetch(`${service.url}/v1/catalog`, {
      headers: { 'Shoal-Min-Position': '999999999' },
    });
    expect(get.status).toBe(503);
    const body = (await get.json()) as { code: string; detail: string };
    expect(body.code).toBe('POSITION_NOT_REACHED');
    expect(body.detail).toMatch(/999999999/);
  });

  it('lists tags and the catalog, deletes a tag, and keeps the deletion in history', async () => {
    const repo = randomRepo('e2e/app');
    const digests = await manifestsOnLog(dir.path, repo, 3);
    for (const [i, tag] of ['b', 'a', 'c'].entries()) {
      expect(
        shoal(['tags', 'put', `${repo}:${tag}`, digests[i] as string, '--url', service.url]).status,
      ).toBe(0);
    }
    expect(shoal(['tags', 'ls', repo, '--url', service.url]).stdout.trim().split('\n')).toEqual([
      'a',
      'b',
      'c',
    ]);
    const catalog = (await (await fetch(`${service.url}/v1/catalog`)).json()) as {
      repositories: string[];
    };
    expect(catalog.repositories).toContain(repo);

    expect(shoal(['tags', 'delete', `${repo}:b`, '--url', service.url]).status).toBe(0);
    const gone = shoal(['tags', 'get', `${repo}:b`, '--url', service.url]);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/TAG_UNKNOWN/);
    const history = JSON.parse(
      shoal(['tags', 'history', `${repo}:b`, '--json', '--data-dir', dir.path]).stdout,
    );
    expect(history.history.map((h: { kind: string }) => h.kind)).toEqual(['pushed', 'deleted']);
  });

  it('rejects bad input with a clear error and a non-zero exit, writing nothing', () => {
    const before = shoal(['log', 'tail', '--json', '--from', '1', '--data-dir', dir.path]).stdout;
    const badDigest = shoal(['tags', 'put', 'ok/repo:v1', 'sha256:xyz', '--data-dir', dir.path]);
    expect(badDigest.status).toBe(1);
    expect(badDigest.stderr).toMatch(/DIGEST_INVALID/);
    const badName = shoal(['tags', 'put', 'Bad/Repo:v1', randomDigest(), '--data-dir', dir.path]);
    expect(badName.status).toBe(1);
    expect(badName.stderr).toMatch(/NAME_INVALID/);
    const badTag = shoal(['tags', 'get', 'ok/repo:-bad', '--data-dir', dir.path]);
    expect(badTag.stderr).toMatch(/TAG_INVALID/);
    const badAt = shoal(['tags', 'get', 'ok/repo:v1', '--at', 'yesterday', '--data-dir', dir.path]);
    expect(badAt.stderr).toMatch(/TIME_INVALID/);
    const unknown = shoal(['replay', '--projection', 'nope', '--data-dir', dir.path]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/unknown projection "nope"/);
    expect(shoal(['log', 'tail', '--json', '--from', '1', '--data-dir', dir.path]).stdout).toBe(
      before,
    );
  });

  it('prints the log, and replay --verify agrees with the live projections', () => {
    const tail = shoal(['log', 'tail', '--json', '--from', '1', '--data-dir', dir.path]);
    expect(tail.status).toBe(0);
    const events = tail.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(events.length).toBeGreaterThan(5);
    expect(events.map((e) => e.position)).toEqual(
      [...events.map((e) => e.position)].sort((a, b) => a - b),
    );
    expect(events[0]).toMatchObject({ position: 1, type: 'ManifestPushed' });
    expect(events.map((e) => e.type)).toContain('TagPushed');

    const verify = shoal(['replay', '--verify', '--data-dir', dir.path]);
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
    expect(verify.stdout).toMatch(/build-index: OK/);
    expect(verify.stdout).toMatch(/tag-history: OK/);
  });
});

describe('the CLI refuses data it does not own', () => {
  it('refuses a non-empty directory that is not a Shoal data directory, touching nothing', () => {
    const dir = tempDir();
    try {
      writeFileSync(join(dir.path, 'precious.txt'), 'keep me');
      const result = shoal([
        'tags',
        'put',
        'a/b:c',
        randomDigest(),
        '--force',
        '--data-dir',
        dir.path,
      ]);
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/not a Shoal data directory/);
      expect(readFileSync(join(dir.path, 'precious.txt'), 'utf8')).toBe('keep me');
    } finally {
      dir.cleanup();
    }
  });

  it('refuses a corrupt log file and leaves its bytes as they were', () => {
    const dir = tempDir();
    try {
      // A tag on a manifest the repository lacks: refused, the log is there all the same.
      const refused = shoal(['tags', 'put', 'a/b:c', randomDigest(), '--data-dir', dir.path]);
      expect(refused.stderr).toMatch(/MANIFEST_UNKNOWN/);
      const logPath = join(dir.path, 'log.db');
      const garbage = randomBytes(64 * 1024);
      writeFileSync(logPath, garbage);
      for (const suffix of ['-wal', '-shm']) writeFileSync(`${logPath}${suffix}`, '');
      const result = shoal(['tags', 'get', 'a/b:c', '--data-dir', dir.path]);
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/LOG_CORRUPT|DATA_DIR_INVALID/);
      expect(readFileSync(logPath).equals(garbage)).toBe(true);
    } finally {
      dir.cleanup();
    }
  });

  it('refuses to read a data directory that does not exist, without creating it', () => {
    const dir = tempDir();
    try {
      const missing = join(dir.path, 'nope');
      const result = shoal(['tags', 'ls', 'a/b', '--data-dir', missing]);
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/not a Shoal data directory/);
      expect(() => readFileSync(join(missing, 'shoal.json'))).toThrow();
    } finally {
      dir.cleanup();
    }
  });
});

describe('shoal dev', () => {
  it('starts the cluster, prints where it listens and writes endpoints.json', async () => {
    const dir = tempDir();
    mkdirSync(dir.path, { recursive: true });
    const base = 20000 + Math.floor(Math.random() * 12000);
    const dev = await startService(
      ['dev', '--data-dir', dir.path, '--port-base', String(base)],
      /build-index\s+(http:\/\/\S+)/,
    );
    try {
      expect(dev.url).toBe(`http://127.0.0.1:${base + 2}`);
      const endpoints = JSON.parse(readFileSync(join(dir.path, 'endpoints.json'), 'utf8'));
      expect(endpoints.buildIndex).toBe(dev.url);
      const health = await fetch(`${dev.url}/health`);
      expect(await health.json()).toMatchObject({ status: 'ok' });
      const metrics = await (await fetch(`${dev.url}/metrics`)).text();
      expect(metrics).toMatch(/shoal_http_requests_total/);
    } finally {
      await dev.stop();
      dir.cleanup();
    }
  });
});
