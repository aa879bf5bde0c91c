import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

// The README's layout table ("Architecture in short") matches the tree: every folder it names
// exists; every top-level folder of the repository (the product's, as tsconfig.build.json
// compiles them, and the rest) has a row; and a row of a product folder or of test/ names
// each folder directly inside it. A folder added, moved or removed without the table fails.
const root = resolve(__dirname, '../..');
// Build output and what runs leave behind (all git-ignored): never part of the layout.
const ignored = new Set([
  'node_modules',
  'dist',
  'dist-bench',
  'coverage',
  'test-results',
  'sim-results',
]);

const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The rows of the first table after `## Architecture in short`: folder → its "holds" cell. */
const layoutTable = (): Map<string, string> => {
  const section = readme.split(/^## Architecture in short$/m)[1];
  if (section === undefined) throw new Error('README has no "## Architecture in short"');
  const lines = section.split('\n');
  const first = lines.findIndex((line) => line.startsWith('|'));
  const rows = new Map<string, string>();
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith('|')) break;
    const [folder, holds] = line
      .split(/(?<!\\)\|/)
      .slice(1, -1)
      .map((cell) => cell.trim());
    const name = /^`([^`]+)\/`$/.exec(folder ?? '')?.[1];
    if (name === undefined) throw new Error(`layout row without a \`folder/\`: ${line}`);
    rows.set(name, holds ?? '');
  }
  return rows;
};

/** Folder paths a cell names, relative to its row: `a/`, `a/b/`, `a/{b,c}/`. */
const pathsIn = (cell: string): string[] =>
  [...cell.matchAll(/`([a-z0-9.-]+(?:\/[a-z0-9.-]+)*\/(?:\{[a-z0-9.,-]+\}\/)?)`/g)].flatMap(
    ([, path]) => {
      const braces = /^(.*)\{([^}]+)\}\/$/.exec(path as string);
      if (braces === null) return [(path as string).replace(/\/$/, '')];
      return (braces[2] as string).split(',').map((name) => `${braces[1]}${name}`);
    },
  );

const directoriesIn = (dir: string): string[] =>
  readdirSync(join(root, dir), { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith('.') && !ignored.has(e.name))
    .map((e) => e.name)
    .sort();

const productFolders = (
  JSON.parse(readFileSync(join(root, 'tsconfig.build.json'), 'utf8')) as { include: string[] }
).include;

describe("the README's layout table", () => {
  const rows = layoutTable();

  it('has a row for every top-level folder, each product folder among them', () => {
    expect([...rows.keys()].sort()).toEqual(directoriesIn(''));
    expect(productFolders.length).toBeGreaterThan(5);
    expect(productFolders.filter((folder) => !rows.has(folder))).toEqual([]);
  });

  it('names only folders that exist', () => {
    const missing = [...rows].flatMap(([folder, holds]) =>
      pathsIn(holds)
        .map((path) => `${folder}/${path}`)
        .filter(
          (path) => !existsSync(join(root, path)) || !statSync(join(root, path)).isDirectory(),
        ),
    );
    expect(missing).toEqual([]);
  });

  it('names every folder directly inside a product folder and test/', () => {
    const unnamed = [...productFolders, 'test'].flatMap((folder) => {
      const named = new Set(pathsIn(rows.get(folder) ?? '').map((path) => path.split('/')[0]));
      return directoriesIn(folder)
        .filter((name) => !named.has(name))
        .map((name) => `${folder}/${name}/`);
    });
    expect(unnamed).toEqual([]);
  });

  it('links the architecture page, which exists', () => {
    expect(readme).toContain('(docs/architecture.md)');
    expect(existsSync(join(root, 'docs/architecture.md'))).toBe(true);
    expect(readme).not.toMatch(/\.\.\/shared/);
  });
});
