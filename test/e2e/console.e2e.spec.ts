import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { launchBrowser, screenshotter } from '../fixtures/browser';
import type { Service } from '../fixtures/cli';
import { shoal, startService, tempDir } from '../fixtures/cli';
import type { GeneratedImage } from '../fixtures/images';
import { generateImage } from '../fixtures/images';
import { manifestsOnLog } from '../fixtures/dataDirLog';
import { runTool } from '../fixtures/processes';
import { testCluster } from '../fixtures/security';
import { writeHtpasswd } from '../fixtures/authProxy';

// The web console in a real browser (Debian's chromium through playwright-core) over a real
// `shoal dev --agents 2` cluster: an image pushed with skopeo shows up; moving the tag with
// skopeo adds to the open timeline without a reload; "as of" a time before the move shows
// the old digest; a replication rule to a second cluster shows its lag fall to zero; a pull
// through both agents shows their progress. A console alone (`shoal console`) on an empty
// log shows empty pages, and a banner on the open page once its build-index process stops.
// Behind logins, a browser without credentials is refused and one logged in as a user sees
// only the repositories the policies let that user pull.
// Screenshots of every page are saved under test-results/console/.
const root = resolve(__dirname, '../..');
const skopeo = '/usr/bin/skopeo';
const oras = join(root, '.tools/bin/oras');
const run = (command: string, args: string[]) => runTool(command, args, { cwd: root });
const shot = screenshotter('console');
const wait = { timeout: 60_000 };

const manifestDigest = (image: GeneratedImage) => image.top.digest;

describe('the web console in a browser', () => {
  let dir: ReturnType<typeof tempDir>;
  let browser: Awaited<ReturnType<typeof launchBrowser>>;
  const services: Service[] = [];

  const startDev = async (name: string, base: number, agents: number) => {
    const dataDir = join(dir.path, name);
    const dev = await startService(
      [
        'dev',
        '--data-dir',
        dataDir,
        '--port-base',
        String(base),
        '--agents',
        String(agents),
        '--cluster',
        name,
      ],
      /\bconsole\s+(http:\/\/\S+)/,
      {},
      120_000,
    );
    services.push(dev);
    const endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8')) as {
      proxy: string;
      buildIndex: string;
      agents: string[];
      console: string;
    };
    return { dev, endpoints, host: endpoints.proxy.replace(/^http:\/\//, '') };
  };

  beforeAll(async () => {
    dir = tempDir('shoal-console-e2e-');
    browser = await launchBrowser(join(dir.path, 'profile'));
  });
  afterAll(async () => {
    await browser?.close();
    for (const service of services.splice(0).reverse()) await service.stop();
    dir?.cleanup();
  });

  it('shows a pushed tag, its history live, as-of, replication lag and swarms', async () => {
    const base = 20000 + Math.floor(Math.random() * 11000);
    const [a, b] = await Promise.all([startDev('east', base, 2), startDev('west', base + 50, 1)]);
    const [one, two] = await Promise.all([
      generateImage({ dir: join(dir.path, 'one'), layers: 2, layerSize: 2 * 1024 * 1024 }),
      generateImage({ dir: join(dir.path, 'two'), layers: 2, layerSize: 2 * 1024 * 1024 }),
    ]);
    const repo = `demo/app-${randomBytes(3).toString('hex')}`;
    const push = (image: GeneratedImage) =>
      run(skopeo, [
        '--insecure-policy',
        'copy',
        '--dest-tls-verify=false',
        image.layoutRef,
        `docker://${a.host}/${repo}:v1`,
      ]);
    push(one);

    const page = await browser.context.newPage();
    await page.goto(a.endpoints.console);

    // Repositories: search, find the repository, open it and see the tag and its digest.
    await page.getByRole('searchbox', { name: 'Search repositories' }).fill('app-');
    await page
      .locator('[data-testid=repositories]')
      .getByRole('link', { name: repo })
      .waitFor(wait);
    await shot(page, '01-repositories');
    await page.getByRole('link', { name: repo }).click();
    const row = page.locator('[data-testid=tags] tr[data-tag=v1]');
    await row.waitFor(wait);
    expect(await row.locator('code.digest').getAttribute('title')).toBe(manifestDigest(one));
    expect(await row.textContent()).toContain('linux/amd64');
    await shot(page, '02-repository');

    // Tag history: the open timeline gains the move, without a reload.
    await row.getByRole('link', { name: 'v1' }).click();
    const timeline = page.locator('[data-testid=timeline] > li');
    await timeline.first().waitFor(wait);
    expect(await timeline.count()).toBe(1);
    await page.evaluate(
      () => ((globalThis as unknown as { notReloaded: boolean }).notReloaded = true),
    );
    push(two);
    await page
      .locator(`[data-testid=timeline] > li[data-digest="${manifestDigest(two)}"]`)
      .waitFor(wait);
    expect(await timeline.count()).toBe(2);
    expect(
      await page.evaluate(() => (globalThis as unknown as { notReloaded?: boolean }).notReloaded),
    ).toBe(true);
    expect(await timeline.nth(1).getAttribute('data-digest')).toBe(manifestDigest(one));
    await shot(page, '03-tag-history');
    // Each change opens the whole repository as of its position.
    await timeline.nth(1).getByTestId('as-of-link').click();
    await page
      .locator(`[data-testid=as-of-tags] tr[data-tag=v1] td[data-digest="${one.top.digest}"]`)
      .waitFor(wait);
    await page.goBack();
    await timeline.nth(1).waitFor(wait);

    // As of the first push's time (before the move): the old digest, marked as moved since.
    const firstAt = (await timeline
      .nth(1)
      .locator('.who span[title]')
      .getAttribute('title')) as string;
    await page.goto(`${a.endpoints.console}/#/repo/${encodeURIComponent(repo)}`);
    await page.getByRole('textbox', { name: 'as of a time or a log position' }).fill(firstAt);
    await page.getByRole('button', { name: 'Show the repository then' }).click();
    const then = page.locator('[data-testid=as-of-tags] tr[data-tag=v1] td[data-digest]');
    await then.waitFor(wait);
    expect(await then.getAttribute('data-digest')).toBe(manifestDigest(one));
    expect(await page.locator('[data-testid=as-of-tags]').textContent()).toContain('moved to');
    await shot(page, '04-as-of');

    // Manifest: config and layers with sizes, no referrers.
    await page.locator('[data-testid=tags] tr[data-tag=v1] a code.digest').click();
    await page.locator('[data-testid=manifest]').waitFor(wait);
    await page.getByRole('heading', { name: /^Layers \(2,/ }).waitFor(wait);
    await shot(page, '05-manifest');

    // A multi-platform image with a signature attached by oras: platforms on the tag, the
    // index's children and the referrer on its manifest page.
    const art = `art/multi-${randomBytes(3).toString('hex')}`;
    const multi = await generateImage({
      dir: join(dir.path, 'multi'),
      layers: 1,
      platforms: ['linux/amd64', 'linux/arm64'],
    });
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--all',
      '--dest-tls-verify=false',
      multi.layoutRef,
      `docker://${a.host}/${art}:v1`,
    ]);
    writeFileSync(join(dir.path, 'signature.txt'), randomBytes(32).toString('hex'));
    runTool(
      oras,
      [
        'attach',
        `${a.host}/${art}:v1`,
        '--plain-http',
        '--artifact-type',
        'application/vnd.shoal.signature',
        'signature.txt:text/plain',
      ],
      { cwd: dir.path },
    );
    await page.goto(`${a.endpoints.console}/#/repo/${encodeURIComponent(art)}`);
    const multiRow = page.locator('[data-testid=tags] tr[data-tag=v1]');
    await multiRow.waitFor(wait);
    expect(await multiRow.textContent()).toContain('linux/amd64, linux/arm64');
    await multiRow.locator('a code.digest').click();
    await page.getByRole('heading', { name: 'Index children' }).waitFor(wait);
    expect(await page.locator('[data-testid=children] tr[data-digest]').count()).toBe(2);
    await page
      .locator('[data-testid=referrers]', { hasText: 'application/vnd.shoal.signature' })
      .waitFor(wait);
    await shot(page, '05b-index-and-referrer');

    // Replication: a rule to the second cluster, its lag falling to zero on the open page.
    await page.goto(`${a.endpoints.console}/#/replication`);
    await page.getByText('No replication rules.').waitFor(wait);
    await shot(page, '06-replication-empty');
    const added = shoal([
      'rules',
      'add',
      '--name',
      'to-west',
      '--repo',
      'demo/*',
      '--to',
      b.endpoints.proxy,
      '--backfill',
      '--url',
      a.endpoints.buildIndex,
    ]);
    expect([added.status, added.stderr]).toEqual([0, expect.any(String)]);
    const rule = page.locator('[data-testid=rules] tr[data-rule=to-west]');
    await rule.waitFor(wait);
    await rule.locator('.pill', { hasText: 'caught-up' }).waitFor(wait);
    expect(await rule.locator('[data-testid=lag]').textContent()).toBe('0 events');
    await shot(page, '07-replication');
    const copied = await rule.locator('[data-testid=copied]').textContent();
    expect(copied).toMatch(/^\s*[1-9]/);

    // Swarms: pull through both agents; both show complete, with bytes from peers or origins.
    await page.goto(`${a.endpoints.console}/#/swarms`);
    await page.getByText('No swarm is active.').waitFor(wait);
    for (const [i, agent] of a.endpoints.agents.entries()) {
      run(skopeo, [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        `docker://${agent.replace(/^http:\/\//, '')}/${repo}:v1`,
        `oci:${join(dir.path, `pulled-${i}`)}:v1`,
      ]);
    }
    const layer = two.manifests[0]?.layers[0]?.digest as string;
    const swarm = page.locator(`article.swarm[data-digest="${layer}"]`);
    await swarm.locator('[data-testid=complete-agents]', { hasText: '2' }).waitFor(wait);
    expect(await swarm.locator('tr[data-peer]').count()).toBeGreaterThanOrEqual(2);
    await shot(page, '08-swarms');

    // Origins and placement: the ring of one origin, the blobs with their holders.
    await page.goto(`${a.endpoints.console}/#/placement`);
    await page.locator('[data-testid=ring] li').first().waitFor(wait);
    await page.locator(`[data-testid=blobs] code[title="${layer}"]`).waitFor(wait);
    await shot(page, '09-placement');

    // Event log: filtered to tag pushes, then the live tail gains a new one.
    await page.goto(`${a.endpoints.console}/#/events`);
    await page.getByRole('combobox', { name: 'event type' }).selectOption('TagPushed');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.locator('[data-testid=events] tr[data-position]').nth(1).waitFor(wait);
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--dest-tls-verify=false',
      one.layoutRef,
      `docker://${a.host}/${repo}:v2`,
    ]);
    await page.locator('[data-testid=events] tr', { hasText: `${repo}:v2` }).waitFor(wait);
    const types = await page
      .locator('[data-testid=events] tr[data-position] .type')
      .allTextContents();
    expect(new Set(types)).toEqual(new Set(['TagPushed']));
    await shot(page, '10-events');

    expect(browser.errors).toEqual([]);
    await page.close();
  }, 300_000);

  it('a console alone on an empty log: empty pages, and a banner once its build-index stops', async () => {
    const port = 20000 + Math.floor(Math.random() * 11000);
    const dataDir = join(dir.path, 'alone');
    const buildIndex = await startService(
      ['build-index', '--data-dir', dataDir, '--port', String(port + 1)],
      /build-index listening on (http:\/\/\S+)/,
    );
    services.push(buildIndex);
    const config = join(dir.path, 'console.yaml');
    writeFileSync(
      config,
      [
        `dataDir: ${dataDir}`,
        'listen:',
        `  port: ${port}`,
        'services:',
        `  buildIndexUrl: ${buildIndex.url}`,
        // Nothing listens on port 9 (discard): the tracker is down from the start.
        '  trackers: [http://127.0.0.1:9]',
        '  timeoutMs: 500',
        'live:',
        '  healthIntervalMs: 200',
      ].join('\n'),
    );
    const alone = await startService(
      ['console', '--config', config],
      /console listening on (http:\/\/\S+)/,
    );
    services.push(alone);
    const page = await browser.context.newPage();
    const errorsBefore = browser.errors.length;
    await page.goto(alone.url);
    await page.getByText('No repositories yet.').waitFor(wait);
    const banner = page.locator('[data-testid=service-down]', { hasText: 'build-index' });
    await page.locator('[data-testid=service-down]', { hasText: 'tracker' }).waitFor(wait);
    expect(await banner.count()).toBe(0);
    // Stopping build-index raises its banner on the open page, without a reload.
    await buildIndex.stop();
    await banner.waitFor(wait);
    expect(await banner.textContent()).toContain('tags cannot be pushed or moved');
    await shot(page, '11-empty-build-index-down');
    await page.goto(`${alone.url}/#/swarms`);
    await page.getByText(/Tracker http:\/\/127\.0\.0\.1:9 is not answering/).waitFor(wait);
    await shot(page, '12-swarms-tracker-down');
    await page.goto(`${alone.url}/#/events`);
    await page.getByText('No event matches yet').waitFor(wait);
    await page.goto(`${alone.url}/#/repo/nope%2Fnothing`);
    await page
      .locator('[data-testid=unknown-repository]', { hasText: 'nope/nothing' })
      .waitFor(wait);
    await shot(page, '13-unknown-repository');
    expect(browser.errors.slice(errorsBefore).filter((e) => !e.includes('404'))).toEqual([]);
    await page.close();
  }, 180_000);

  it('behind logins: asks for one, and shows a user only what the policies let them pull', async () => {
    const port = 20000 + Math.floor(Math.random() * 11000);
    const dataDir = join(dir.path, 'guarded');
    const config = join(dir.path, 'guarded.yaml');
    writeFileSync(
      config,
      [
        `dataDir: ${dataDir}`,
        'listen:',
        `  port: ${port}`,
        'security:',
        '  mode: required',
        `  serviceKeyFile: ${testCluster().serviceKeyFile}`,
        'auth:',
        '  htpasswd:',
        `    file: ${writeHtpasswd(join(dir.path, 'guarded.htpasswd'), { alice: 'alice-pw' })}`,
        '  policies:',
        '    - { repositories: ["team-a/**"], users: [alice], actions: [pull] }',
      ].join('\n'),
    );
    const guarded = await startService(
      ['console', '--config', config],
      /console listening on (http:\/\/\S+)/,
      // Whatever the suite's security switch says: this console requires logins, and lets
      // no one in without one.
      {
        SHOAL_SECURITY_MODE: 'required',
        SHOAL_AUTH_ANONYMOUS_REPOSITORIES: undefined,
        SHOAL_AUTH_ANONYMOUS_ACTIONS: undefined,
      },
    );
    services.push(guarded);
    await manifestsOnLog(dataDir, 'team-a/app');
    await manifestsOnLog(dataDir, 'team-b/secret');

    // Without credentials: the page asks for them (a headless browser has none to give, and
    // gives up as a person cancelling the prompt would).
    const refused = await fetch(guarded.url);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe('Basic realm="shoal console"');
    const anonymous = await browser.context.newPage();
    await expect(anonymous.goto(guarded.url)).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
    await anonymous.close();

    // Logged in as alice: team-a's repository, never team-b's.
    const alice = await launchBrowser(join(dir.path, 'profile-alice'), {
      username: 'alice',
      password: 'alice-pw',
    });
    try {
      const page = await alice.context.newPage();
      await page.goto(guarded.url);
      await page.getByText('user:alice').waitFor(wait);
      const list = page.locator('[data-testid=repositories]');
      await list.getByRole('link', { name: 'team-a/app' }).waitFor(wait);
      expect(await list.textContent()).not.toContain('team-b');
      await shot(page, '14-logged-in-user');
      await page.goto(`${guarded.url}/#/repo/${encodeURIComponent('team-b/secret')}`);
      await page
        .locator('[data-testid=unknown-repository]', { hasText: 'team-b/secret' })
        .waitFor(wait);
      expect(alice.errors.filter((e) => !e.includes('404'))).toEqual([]);
    } finally {
      await alice.close();
    }
  }, 120_000);
});
