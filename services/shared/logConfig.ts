import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';

/** Which event log a role uses. The embedded SQLite log lives in the data directory. */
export const LogConfigSchema = Type.Object(
  {
    adapter: Type.Union(
      [Type.Literal('sqlite'), Type.Literal('kafka'), Type.Literal('eventstoredb')],
      {
        default: 'sqlite',
        description:
          'event log adapter: sqlite (embedded, one host), kafka (a fleet), eventstoredb',
      },
    ),
    sqlite: Type.Object(
      {
        durability: Type.Union([Type.Literal('full'), Type.Literal('normal')], {
          default: 'full',
          description: 'full: fsync every append (survives power loss); normal: survives kill -9',
        }),
        pollIntervalMs: Type.Integer({
          default: 25,
          minimum: 1,
          description: 'how often a subscriber looks for appends by other processes',
        }),
      },
      { default: {} },
    ),
    kafka: Type.Object(
      {
        brokers: Type.Array(Type.String({ minLength: 1 }), {
          default: ['127.0.0.1:9092'],
          minItems: 1,
          description: 'bootstrap brokers, host:port (env: comma-separated)',
        }),
        topic: Type.String({
          default: 'shoal-log',
          minLength: 1,
          maxLength: 249,
          pattern: '^[a-zA-Z0-9._-]+$',
          description: "the cluster's log: one single-partition topic, infinite retention",
        }),
        clientId: Type.String({ default: 'shoal', description: 'kafkajs client id' }),
        replicationFactor: Type.Integer({
          default: 3,
          minimum: 1,
          description: 'replication factor when Shoal creates the topic (3 in production)',
        }),
        createTopic: Type.Boolean({
          default: true,
          description: 'create the topic when it is missing; otherwise a missing topic fails',
        }),
        connectionTimeoutMs: Type.Integer({
          default: 3000,
          minimum: 1,
          description: 'TCP connect timeout per broker',
        }),
        requestTimeoutMs: Type.Integer({
          default: 30000,
          minimum: 1,
          description: 'timeout of one request to a broker',
        }),
        retries: Type.Integer({
          default: 5,
          minimum: 0,
          description: 'retries of a failed request before the log reports LOG_UNAVAILABLE',
        }),
        stallTimeoutMs: Type.Integer({
          default: 30000,
          minimum: 1,
          description:
            'how long a call waits for the topic to be read up to what it needs with no progress',
        }),
        ssl: Type.Boolean({ default: false, description: 'TLS to the brokers' }),
        sasl: Type.Optional(
          Type.Object(
            {
              mechanism: Type.Union(
                [
                  Type.Literal('plain'),
                  Type.Literal('scram-sha-256'),
                  Type.Literal('scram-sha-512'),
                ],
                { description: 'SASL mechanism' },
              ),
              username: Type.String({ description: 'SASL user' }),
              password: Type.String({ description: 'SASL password' }),
            },
            { description: 'SASL authentication; absent: none' },
          ),
        ),
      },
      { default: {} },
    ),
    eventstoredb: Type.Object(
      {
        connectionString: Type.String({
          default: 'esdb://127.0.0.1:2113?tls=false',
          minLength: 1,
          description: 'EventStoreDB connection string (esdb:// or esdb+discover://)',
        }),
        streamPrefix: Type.String({
          default: 'shoal-',
          minLength: 1,
          description: "prefix of Shoal's streams; one per cluster sharing a database",
        }),
      },
      { default: {} },
    ),
  },
  { default: {} },
);

export type LogConfig = Static<typeof LogConfigSchema>;

export const LogLevelSchema = Type.Union(
  [
    Type.Literal('fatal'),
    Type.Literal('error'),
    Type.Literal('warn'),
    Type.Literal('info'),
    Type.Literal('debug'),
    Type.Literal('trace'),
    Type.Literal('silent'),
  ],
  { default: 'info', description: 'log level' },
);
