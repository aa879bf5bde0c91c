import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

// The layer rules (.dependency-cruiser.js, run by `npm run lint`) on test/fixtures/layers/: a
// tree shaped like the repository in which every rule is crossed by one file named after the
// crossing (`domain/importsKit.ts`, …) and every other import is one the layers allow. The
// checker must report exactly those crossings, so a rule that stops matching (a typo in a
// path, a new folder) fails here instead of silently passing on the real tree.
const root = resolve(__dirname, '../..');
const fixture = join(root, 'test/fixtures/layers');
const config = join(root, '.dependency-cruiser.js');
const folders = ['domain', 'projections', 'kit', 'adapters', 'p2p', 'services', 'test'];

type Violation = { from: string; to: string; rule: { name: string; severity: string } };

/** The checker as `npm run lint:layers` runs it, in `cwd`, reporting as `outputType`. */
const cruise = (cwd: string, outputType: 'json' | 'err') =>
  spawnSync(
    process.execPath,
    [
      join(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs'),
      '--config',
      config,
      '--output-type',
      outputType,
      ...folders,
    ],
    {
      cwd,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      // CI sets FORCE_COLOR; the report is read as text, so it must come without colour codes.
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' },
    },
  );

describe('the layer rules', () => {
  let violations: Violation[] = [];
  beforeAll(() => {
    const report = JSON.parse(cruise(fixture, 'json').stdout) as {
      summary: { violations: Violation[] };
    };
    violations = report.summary.violations;
  });

  it('reject every crossing in the fixture tree, and nothing else', () => {
    const found = violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`).sort();
    expect(found).toEqual(
      [
        'domain-imports-no-layer: domain/importsKit.ts → kit/http/range.ts',
        'pure-code-uses-small-libraries: domain/importsNode.ts → crypto',
        'projections-import-domain-only: projections/importsAdapter.ts → adapters/eventlog/sqlite/sqliteEventLog.ts',
        'kit-imports-domain-only: kit/importsP2p.ts → p2p/swarm/swarmHost.ts',
        'no-http-server-below-services: kit/importsFastify.ts → ../../../node_modules/fastify/fastify.js',
        'adapters-import-domain-and-kit: adapters/blobstore/s3/importsService.ts → services/origin/client/originClient.ts',
        'adapter-families-stay-apart: adapters/blobstore/s3/importsEventLog.ts → adapters/eventlog/appendRules.ts',
        'registry-blob-store-uses-only-the-registry-client: adapters/blobstore/registry/importsEventLog.ts → adapters/eventlog/appendRules.ts',
        'adapter-implementations-stay-apart: adapters/eventlog/kafka/importsSqlite.ts → adapters/eventlog/sqlite/sqliteEventLog.ts',
        'p2p-imports-domain-and-kit: p2p/swarm/importsAdapter.ts → adapters/registry/registryAuth.ts',
        'p2p-basics-import-no-p2p: p2p/metainfo/importsWire.ts → p2p/wire/codec.ts',
        'p2p-wire-imports-basics-only: p2p/wire/importsScheduler.ts → p2p/scheduler/scheduler.ts',
        'p2p-pieces-below-scheduler: p2p/pieces/importsSwarm.ts → p2p/swarm/swarmHost.ts',
        'p2p-scheduler-below-swarm: p2p/scheduler/importsSwarm.ts → p2p/swarm/swarmHost.ts',
        'roles-meet-through-client: services/proxy/importsOriginServer.ts → services/origin/server/routes.ts',
        'client-exposes-no-internals: services/origin/client/importsServer.ts → services/origin/server/routes.ts',
        'shared-imports-no-role: services/shared/importsRole.ts → services/proxy/pushes.ts',
        'composition-root-imports-public-surfaces: services/cli/importsOriginServer.ts → services/origin/server/routes.ts',
        'product-imports-no-test-code: services/proxy/importsTestDouble.ts → test/doubles/fakeOrigin.ts',
        'no-runtime-cycles: services/tracker/cycleA.ts → services/tracker/cycleB.ts',
        'imports-resolve: services/tracker/importsMissing.ts → ./missing',
      ].sort(),
    );
    expect(violations.every((v) => v.rule.severity === 'error')).toBe(true);
  });

  it('fail the lint run: it exits with the number of crossings', () => {
    const run = cruise(fixture, 'err');
    expect(run.stdout).toContain('error domain-imports-no-layer: domain/importsKit.ts');
    expect(run.status).toBe(violations.length);
  });

  it('cover every rule of the configuration', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { forbidden } = require(config) as { forbidden: { name: string }[] };
    const crossed = new Set(violations.map((v) => v.rule.name));
    expect(forbidden.map((r) => r.name).filter((name) => !crossed.has(name))).toEqual([]);
  });
});
