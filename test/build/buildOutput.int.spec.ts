import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { runTool } from '../fixtures/processes';

// The rule: `npm run build` (tsconfig.build.json) emits the product and nothing else. dist/,
// what the package's bin and the Docker image run, holds only the product folders, compiled
// from their non-spec sources, and needs nothing outside itself: no spec, no test double, no
// fixture, no contract suite, no benchmark. Benchmarks are test code that runs compiled:
// `npm run build:bench` (tsconfig.bench.json) compiles test/bench/ and what it imports into
// dist-bench/, never into dist/. Both builds go to temporary directories here, so a build
// left in dist/ by an earlier version (tsc never deletes) cannot hide or fake a finding.
const root = resolve(__dirname, '../..');
const productFolders = ['domain', 'projections', 'kit', 'adapters', 'p2p', 'services'];
const testFolderNames = ['test', 'testing', 'doubles', 'fixtures', 'contracts', 'bench'];

/** Every file below `dir`, as `/`-separated paths relative to it. */
const filesUnder = (dir: string, below = ''): string[] =>
  readdirSync(join(dir, below), { withFileTypes: true }).flatMap((entry) => {
    const path = below === '' ? entry.name : `${below}/${entry.name}`;
    return entry.isDirectory() ? filesUnder(dir, path) : [path];
  });

const run = (command: string, args: string[]) => runTool(command, args, { cwd: root });

const tsc = join(root, 'node_modules/typescript/bin/tsc');
const scripts = (
  JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  }
).scripts;

describe('the build output', () => {
  let out: string;
  let dist: string;
  beforeAll(() => {
    out = mkdtempSync(join(tmpdir(), 'shoal-build-'));
    dist = join(out, 'dist');
    run('npm', ['run', '--silent', 'build', '--', '--outDir', dist]);
  }, 300_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('`npm run build` emits the product folders only, with no test code', () => {
    const files = filesUnder(dist);
    expect(files).toContain('services/cli/main.js');

    const outside = files.filter((file) => !productFolders.includes(file.split('/')[0] ?? ''));
    expect(outside).toEqual([]);
    const specs = files.filter((file) => /\.spec\.(js|d\.ts|js\.map)$/.test(file));
    expect(specs).toEqual([]);
    const inTestFolders = files.filter((file) =>
      file
        .split('/')
        .slice(0, -1)
        .some((folder) => testFolderNames.includes(folder)),
    );
    expect(inTestFolders).toEqual([]);
    // Every double by its name, wherever it might be put back.
    const doubles = new Set(
      readdirSync(join(root, 'test/doubles')).map((name) => name.replace(/\.ts$/, '')),
    );
    const doublesShipped = files.filter((file) =>
      doubles.has(
        (file.split('/').pop() ?? '').replace(/\.js(\.map)?$/, '').replace(/\.d\.ts$/, ''),
      ),
    );
    expect(doublesShipped).toEqual([]);
    // And anything named as test code.
    const named = files.filter((file) =>
      /fixture|fake|mock|stub|harness|double|golden/i.test(file.split('/').pop() ?? ''),
    );
    expect(named).toEqual([]);
  });

  it('dist/ needs nothing outside itself: every relative require resolves inside it', () => {
    const unresolved: string[] = [];
    for (const file of filesUnder(dist).filter((f) => f.endsWith('.js'))) {
      const code = readFileSync(join(dist, file), 'utf8');
      for (const [, spec] of code.matchAll(/require\("(\.{1,2}\/[^"]*)"\)/g)) {
        const target = resolve(dirname(join(dist, file)), spec as string);
        const found = [`${target}.js`, join(target, 'index.js'), target].some(
          (candidate) => candidate.startsWith(`${dist}/`) && existsSync(candidate),
        );
        if (!found) unresolved.push(`${file}: ${spec}`);
      }
    }
    expect(unresolved).toEqual([]);
  });

  it('every `npm run bench:*` runs a file that `npm run build:bench` emits into dist-bench/', () => {
    // build:bench is the product build, then tsconfig.bench.json into dist-bench/.
    expect(scripts['build:bench']).toBe('npm run --silent build && tsc -p tsconfig.bench.json');
    const benches = Object.entries(scripts).filter(([name]) => name.startsWith('bench:'));
    expect(benches.length).toBeGreaterThan(0);
    const targets = benches.map(([name, command]) => {
      const match = /^npm run --silent build:bench && node dist-bench\/(\S+\.js)$/.exec(command);
      if (match === null) throw new Error(`${name} does not run a bench from dist-bench/`);
      return match[1] as string;
    });
    const benchOut = join(out, 'dist-bench');
    run(process.execPath, [tsc, '-p', 'tsconfig.bench.json', '--outDir', benchOut]);
    const files = filesUnder(benchOut);
    for (const target of targets) expect(files).toContain(target);
    // Benches bring what they import, and never a test double.
    expect(files.filter((file) => file.startsWith('test/doubles/'))).toEqual([]);
  }, 300_000);
});
