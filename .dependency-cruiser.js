// The layers, as dependency-cruiser rules (`npm run lint:layers`, part of `npm run lint`).
// docs/architecture.md explains them; test/conventions/layers.int.spec.ts runs this file on
// test/fixtures/layers/, a tree in which every rule below is crossed once, and expects each
// crossing to be reported.
//
// Paths are relative to the folder the check runs in (the repository root). Spec files
// (`*.spec.ts`) are tests that live beside the code: no layer rule applies to them.

const spec = '\\.spec\\.ts$';
const npm = [
  'npm',
  'npm-dev',
  'npm-optional',
  'npm-peer',
  'npm-bundled',
  'npm-no-pkg',
  'npm-unknown',
];

/** A forbidden edge: `from` (never a spec file) importing `to`. */
const rule = (name, comment, from, to) => ({
  name,
  comment,
  severity: 'error',
  from: { ...from, pathNot: [spec, ...[from.pathNot ?? []].flat()] },
  to,
});

module.exports = {
  forbidden: [
    // --- the layer order: domain → projections; kit → domain; adapters, p2p → domain, kit;
    // --- services → everything below. Nothing imports upward.
    rule(
      'domain-imports-no-layer',
      'domain/ is the bottom layer: types, pure rules and ports; it imports no other folder',
      { path: '^domain/' },
      { path: '^(projections|kit|adapters|p2p|services|test)/' },
    ),
    rule(
      'pure-code-uses-small-libraries',
      'domain/ and projections/ do no I/O: no Node built-ins, no packages but typebox and rxjs',
      { path: '^(domain|projections)/' },
      {
        dependencyTypes: ['core', ...npm],
        pathNot: '(^|/)node_modules/(@sinclair/typebox|rxjs)/',
      },
    ),
    rule(
      'projections-import-domain-only',
      'projections/ are pure reducers over domain events',
      { path: '^projections/' },
      { path: '^(kit|adapters|p2p|services|test)/' },
    ),
    rule(
      'kit-imports-domain-only',
      'kit/ is shared plumbing (HTTP transport, durable files, SQLite files) below adapters, ' +
        'p2p and services',
      { path: '^kit/' },
      { path: '^(projections|adapters|p2p|services|test)/' },
    ),
    rule(
      'adapters-import-domain-and-kit',
      'adapters implement domain ports; they never reach projections, p2p or services',
      { path: '^adapters/' },
      { path: '^(projections|p2p|services|test)/' },
    ),
    rule(
      'p2p-imports-domain-and-kit',
      'p2p/ is a library the services wire: it never reaches projections, adapters or services',
      { path: '^p2p/' },
      { path: '^(projections|adapters|services|test)/' },
    ),
    rule(
      'no-http-server-below-services',
      'fastify is the services’ edge: kit, adapters and p2p never depend on it',
      { path: '^(kit|adapters|p2p)/' },
      { path: '(^|/)node_modules/(fastify|@fastify/[^/]+)/' },
    ),

    // --- adapters: a family (adapters/<port>/) shares its own top-level files; an
    // --- implementation never imports a sibling implementation or another family — except
    // --- the pull-through blob store, which speaks to outside registries through
    // --- adapters/registry/ (the registry client and its auth).
    rule(
      'adapter-families-stay-apart',
      'an adapter family imports no other family (only blobstore/registry → adapters/registry)',
      { path: '^adapters/([^/]+)/', pathNot: '^adapters/blobstore/registry/' },
      { path: '^adapters/', pathNot: '^adapters/$1/' },
    ),
    rule(
      'registry-blob-store-uses-only-the-registry-client',
      'the pull-through blob store may import adapters/registry/ and nothing else outside its family',
      { path: '^adapters/blobstore/registry/' },
      { path: '^adapters/', pathNot: '^adapters/(blobstore|registry)/' },
    ),
    rule(
      'adapter-implementations-stay-apart',
      'an implementation (adapters/<port>/<impl>/) never imports a sibling implementation',
      { path: '^adapters/([^/]+)/([^/]+)/' },
      { path: '^adapters/$1/[^/]+/', pathNot: '^adapters/$1/$2/' },
    ),

    // --- p2p: its modules point down, from the swarm host to the codecs:
    // --- metainfo, timers, bandwidth ← wire ← pieces ← scheduler ← swarm.
    rule(
      'p2p-basics-import-no-p2p',
      'p2p/metainfo, p2p/timers and p2p/bandwidth are the bottom of p2p/',
      { path: '^p2p/(metainfo|timers|bandwidth)/' },
      { path: '^p2p/', pathNot: '^p2p/$1/' },
    ),
    rule(
      'p2p-wire-imports-basics-only',
      'the wire knows metainfo, timers and bandwidth, not pieces, the scheduler or the swarm',
      { path: '^p2p/wire/' },
      { path: '^p2p/(pieces|scheduler|swarm)/' },
    ),
    rule(
      'p2p-pieces-below-scheduler',
      'the piece store knows the wire (bitfields) and metainfo, not the scheduler or the swarm',
      { path: '^p2p/pieces/' },
      { path: '^p2p/(scheduler|swarm)/' },
    ),
    rule(
      'p2p-scheduler-below-swarm',
      'the scheduler knows nothing of the swarm host that runs it',
      { path: '^p2p/scheduler/' },
      { path: '^p2p/swarm/' },
    ),

    // --- services: one folder per role, plus services/shared (plumbing) and services/cli
    // --- (the composition root).
    rule(
      'roles-meet-through-client',
      'a role imports another role only through its client/ folder (so never services/cli, ' +
        'which has none)',
      { path: '^services/([^/]+)/', pathNot: '^services/(cli|shared)/' },
      { path: '^services/', pathNot: ['^services/($1|shared)/', '^services/[^/]+/client/'] },
    ),
    rule(
      'client-exposes-no-internals',
      "a role's client/ imports none of its own role's other files: importing a client never " +
        'pulls in the server',
      { path: '^services/([^/]+)/client/' },
      { path: '^services/$1/', pathNot: '^services/$1/client/' },
    ),
    rule(
      'shared-imports-no-role',
      'services/shared/ is plumbing every role uses; it imports no role',
      { path: '^services/shared/' },
      { path: '^services/', pathNot: '^services/shared/' },
    ),
    rule(
      'composition-root-imports-public-surfaces',
      'services/cli starts roles through their main.ts, config.ts and client/; by name also ' +
        "build-index's tagService.ts (the in-process tag API it hands to the proxy and that " +
        "`shoal tags` uses on a data directory) and origin's backendConfig.ts (the backends' " +
        'schema and the BlobStores built from it)',
      { path: '^services/cli/' },
      {
        path: '^services/',
        pathNot: [
          '^services/(cli|shared)/',
          '^services/[^/]+/(main|config)\\.ts$',
          '^services/[^/]+/client/',
          '^services/build-index/tagService\\.ts$',
          '^services/origin/backendConfig\\.ts$',
        ],
      },
    ),
    // --- tests and the build.
    rule(
      'product-imports-no-test-code',
      'nothing outside test/ imports test/ or a spec file (dist/ holds no test code)',
      { pathNot: '^test/' },
      { path: ['^test/', spec] },
    ),
    rule(
      'no-runtime-cycles',
      'modules that require each other at run time load half-initialised under CommonJS ' +
        '(cycles through `import type` only are fine)',
      { path: '^(domain|projections|kit|adapters|p2p|services)/' },
      { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    ),
    rule(
      'imports-resolve',
      'every import names a file or package that exists',
      {},
      { couldNotResolve: true },
    ),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // test/fixtures/layers/ breaks every rule on purpose; its spec checks it on its own.
    exclude: { path: ['^(dist|dist-bench|coverage|node_modules)/', '^test/fixtures/layers/'] },
    // `import type` is a dependency too: a layer may not name a type from above.
    tsPreCompilationDeps: true,
    reporterOptions: { text: { highlightFocused: true } },
  },
};
