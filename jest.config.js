// Three tiers by file suffix (see the README, "Development"): unit (pure), int (one real dependency),
// e2e (composed services, real clients). swc strips types; `npm run typecheck` checks them.
const transform = { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }] };
const common = {
  transform,
  testEnvironment: 'node',
  moduleFileExtensions: ['ts', 'js', 'json'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/', '/dist-bench/'],
};
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/**/*.unit.spec.ts'] },
    {
      ...common,
      displayName: 'int',
      testMatch: ['<rootDir>/**/*.int.spec.ts'],
      setupFilesAfterEnv: ['<rootDir>/test/fixtures/longTimeout.ts'],
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/**/*.e2e.spec.ts'],
      setupFilesAfterEnv: ['<rootDir>/test/fixtures/longTimeout.ts'],
    },
  ],
};
