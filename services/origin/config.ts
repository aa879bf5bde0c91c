import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { roleConfig } from '../shared/roleConfig';
import { BackendConfigSchema, BackendRoutesSchema } from './backendConfig';
import { SeederConfigSchema } from './seeder/config';

const GiB = 1024 * 1024 * 1024;

/**
 * origin configuration. Every field has a default; `shoal origin --help` lists them with
 * their environment variables (`backend.path` ← `SHOAL_BACKEND_PATH`, …).
 */
export const OriginConfigSchema = Type.Object({
  id: Type.String({
    default: '1',
    minLength: 1,
    maxLength: 64,
    pattern: '^[A-Za-z0-9._-]+$',
    description:
      'origin id: its name on the ring (placement hashes it: keep it across restarts); ' +
      'its files live in <dataDir>/origin-<id>/',
  }),
  cluster: roleConfig.cluster(),
  dataDir: roleConfig.dataDir('log, origin files'),
  listen: roleConfig.listen(5003),
  advertiseUrl: Type.String({
    default: '',
    description:
      'URL other services reach this origin at (recorded in OriginJoined); empty: the ' +
      'listen address, which must then not be a wildcard',
  }),
  replicas: Type.Integer({
    default: 2,
    minimum: 1,
    maximum: 16,
    description: 'R: how many ring members own each blob',
  }),
  backend: BackendConfigSchema,
  backends: BackendRoutesSchema,
  writeBack: Type.Object(
    {
      minBackoffMs: Type.Integer({
        default: 500,
        minimum: 1,
        description: 'first retry delay of a failed write-back or placement copy',
      }),
      maxBackoffMs: Type.Integer({
        default: 60_000,
        minimum: 1,
        description: 'retry delays double up to this',
      }),
      concurrency: Type.Integer({
        default: 2,
        minimum: 1,
        maximum: 64,
        description: 'write-back and placement jobs run at once',
      }),
      startDelayMs: Type.Integer({
        default: 0,
        minimum: 0,
        description: 'wait this long after start before running queued jobs (tests, drills)',
      }),
      quietMs: Type.Integer({
        default: 1000,
        minimum: 0,
        description:
          'write-back waits until no upload or read has run on this origin for this long, ' +
          'so it does not compete with pushes and pulls for disk and CPU (0: at once)',
      }),
      maxDeferMs: Type.Integer({
        default: 60_000,
        minimum: 0,
        description: 'a write-back waits for a quiet moment at most this long, then runs anyway',
      }),
    },
    { default: {} },
  ),
  cache: Type.Object(
    {
      highWatermark: Type.String({
        default: '90%',
        description:
          'above this, blobs already written back are evicted from local disk, least ' +
          'recently used first: a percentage of the disk in use (90%) or bytes of blobs ' +
          '(500GiB); 0 turns eviction off',
      }),
      lowWatermark: Type.String({
        default: '80%',
        description: 'eviction stops below this (same units as highWatermark)',
      }),
      checkIntervalMs: Type.Integer({
        default: 30_000,
        minimum: 10,
        description: 'how often the cache is measured against the watermarks',
      }),
    },
    { default: {} },
  ),
  healing: Type.Object(
    {
      intervalMs: Type.Integer({
        default: 60_000,
        minimum: 0,
        description:
          'how often this origin looks for blobs it owns but never received (a ring change ' +
          'moved them to it) and fills them from peers or the backend; also at once when ' +
          'the ring changes. 0: off',
      }),
      concurrency: Type.Integer({
        default: 2,
        minimum: 1,
        description: 'blobs filled at once while healing',
      }),
      lostAfterMs: Type.Integer({
        default: 600_000,
        minimum: 0,
        description:
          'a ring member this origin has not heard from for this long (down, not left) is ' +
          'lost: the next origins hold copies of its blobs until it answers again, then ' +
          'release them. 0: never (only leaving moves blobs)',
      }),
    },
    { default: {} },
  ),
  uploads: Type.Object(
    {
      expireAfterMs: Type.Integer({
        default: 24 * 60 * 60 * 1000,
        minimum: 1000,
        description: 'an upload session untouched this long is deleted',
      }),
      maxBlobSize: Type.Integer({
        default: 100 * GiB,
        minimum: 1,
        description: 'largest blob accepted, in bytes',
      }),
      minFreeDiskBytes: Type.Integer({
        default: GiB,
        minimum: 0,
        description:
          'free-disk watermark: a push that would leave less free space on the data ' +
          'directory’s disk fails with 507 STORAGE_FULL and leaves nothing behind (0: off)',
      }),
      maxOpenPerUser: Type.Integer({
        default: 100,
        minimum: 0,
        description:
          'open upload sessions one user (actor) may hold on this origin; more are refused ' +
          '(DENIED) until one ends or expires. 0: no cap',
      }),
    },
    { default: {} },
  ),
  peers: Type.Object(
    {
      timeoutMs: Type.Integer({
        default: 60_000,
        minimum: 100,
        description: 'idle timeout of requests to other origins',
      }),
    },
    { default: {} },
  ),
  readYourWrites: roleConfig.readYourWrites(
    'how long to wait for the placement projection to reach a position',
  ),
  p2p: SeederConfigSchema,
  log: roleConfig.log(),
  tls: roleConfig.tls(),
  security: roleConfig.security(),
  http: roleConfig.http(),
  admin: roleConfig.admin(),
  logLevel: roleConfig.logLevel(),
  tracing: roleConfig.tracing(),
});

export type OriginConfig = Static<typeof OriginConfigSchema>;
