// Lint rules. The one that matters most: domain/ and projections/ do no I/O, so they may not
// import Node's built-ins, servers, vendor clients or loggers (docs/architecture.md, "Layers").
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const ioImports = {
  patterns: [
    { group: ['node:*'], message: 'domain/ and projections/ do no I/O: pass collaborators in.' },
    {
      group: [
        'fs',
        'fs/*',
        'net',
        'http',
        'https',
        'http2',
        'child_process',
        'dgram',
        'os',
        'path',
        'worker_threads',
        'cluster',
        'dns',
        'tls',
        'stream',
        'zlib',
        'crypto',
        'process',
      ],
      message: 'domain/ and projections/ do no I/O: pass collaborators in.',
    },
    {
      group: [
        'fastify',
        'fastify/*',
        '@fastify/*',
        'kafkajs',
        '@eventstore/*',
        '@kurrent/*',
        'pino',
        'pino/*',
        'better-sqlite3',
        '@aws-sdk/*',
        '@google-cloud/*',
        'undici',
      ],
      message: 'domain/ and projections/ may not depend on servers, clients or loggers.',
    },
    { group: ['**/adapters/**', '**/services/**', '**/p2p/**'], message: 'Layers point down.' },
  ],
};

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'dist-bench/**',
      'node_modules/**',
      'coverage/**',
      '.tools/**',
      '.shoal/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportDefaultDeclaration', message: 'Named exports only.' },
      ],
    },
  },
  {
    files: ['domain/**/*.ts', 'projections/**/*.ts'],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-imports': ['error', ioImports],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'No timers in pure code.' },
        { name: 'setInterval', message: 'No timers in pure code.' },
        { name: 'process', message: 'No process access in pure code.' },
        { name: 'fetch', message: 'No I/O in pure code.' },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'Read time from a Clock passed in.' },
        { object: 'Math', property: 'random', message: 'Pass randomness in.' },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportDefaultDeclaration', message: 'Named exports only.' },
        {
          selector: "NewExpression[callee.name='Date'][arguments.length=0]",
          message: 'Read time from a Clock passed in.',
        },
      ],
    },
  },
  {
    files: ['*.config.mjs', '*.config.js'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { module: 'writable', require: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The console's front end: ES modules run by the browser, not by Node.
    files: ['services/console/web/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(
        [
          'window',
          'document',
          'location',
          'fetch',
          'URLSearchParams',
          'EventSource',
          'setTimeout',
          'clearTimeout',
        ].map((name) => [name, 'readonly']),
      ),
    },
  },
);
