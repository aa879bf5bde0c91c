import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

// One naming style for test files: `<subject>.<unit|int|e2e>.spec.ts`, the subject in
// camelCase (`originFaults`, not `origin-faults`; `swarmContainerd`, not `swarm.containerd`).
// The tier suffix is what jest's projects select on, so a file named otherwise never runs.
const root = resolve(__dirname, '../..');
const skipped = new Set([
  'node_modules',
  'dist',
  'dist-bench',
  '.git',
  '.tools',
  '.cache',
  '.shoal',
]);

const testFiles = (below: string): string[] =>
  readdirSync(join(root, below), { withFileTypes: true }).flatMap((entry) => {
    const path = below === '' ? entry.name : `${below}/${entry.name}`;
    if (entry.isDirectory()) return skipped.has(entry.name) ? [] : testFiles(path);
    return /\.(spec|test)\.[cm]?[jt]s$/.test(entry.name) ? [path] : [];
  });

describe('test file names', () => {
  it('are <camelCase subject>.<unit|int|e2e>.spec.ts', () => {
    const files = testFiles('');
    expect(files.length).toBeGreaterThan(50);
    const misnamed = files.filter(
      (path) => !/^[a-z][A-Za-z0-9]*\.(unit|int|e2e)\.spec\.ts$/.test(path.split('/').pop() ?? ''),
    );
    expect(misnamed).toEqual([]);
  });
});
