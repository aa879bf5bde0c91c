/**
 * `npm run bench:log [-- --events N --singles N --json]`: the event log and projection replay.
 *
 * Prints, for the SQLite log (durable, `synchronous=FULL`): single appends per second and
 * their p50/p99 latency, batched appends per second, and a replay of N TagPushed events into
 * the build-index projection (SQLite projection store), in events per second. The memory
 * adapters run the same workload in the same run as the ceiling they are compared with.
 * Targets (issue #2): replay ≥ 300,000 events/s, batched append ≥ 100,000 events/s,
 * single durable append p99 ≤ 5 ms.
 *
 * `--adapter kafka` (brokers from `--brokers` or KAFKA_BROKERS, e.g. after
 * `eval "$(test/services/kafka.sh start)"`) runs the same workload on a fresh Kafka topic
 * (replication factor 1, acks=all) in the same run, in a third column. Its replay starts a new
 * log handle, so it includes reading the whole topic from the broker (the startup scan).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventLog, ProjectionStore, ShoalEvent } from '../../domain';
import { makeEvent } from '../../domain';
import {
  createKafkaClient,
  createKafkaEventLog,
  createMemoryEventLog,
  openSqliteEventLog,
} from '../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../adapters/projection-store/memory/memoryProjectionStore';
import { openSqliteProjectionStore } from '../../adapters/projection-store/sqlite/sqliteProjectionStore';
import { buildIndexProjection } from '../../projections';
import { createProgress, progressMode } from '../../services/shared/progress';
import { rebuildProjection } from '../../services/shared/rebuildProjection';
import { benchArgs } from './args';

const args = benchArgs(
  'bench:log',
  {
    events: { type: 'string', default: '1000000' },
    singles: { type: 'string', default: '2000' },
    batch: { type: 'string', default: '1000' },
    repos: { type: 'string', default: '1000' },
    json: { type: 'boolean', default: false },
    adapter: { type: 'string', default: 'sqlite' },
    brokers: { type: 'string', default: process.env.KAFKA_BROKERS ?? '' },
  },
  `usage: npm run bench:log -- [--events 1000000] [--singles 2000] [--batch 1000] [--repos 1000]
         [--adapter sqlite|kafka] [--brokers HOST:PORT] [--json]
Appends (single and batched), reads and a projection rebuild on the chosen log adapter.`,
);
if (args.adapter !== 'sqlite' && args.adapter !== 'kafka') {
  throw new Error(`--adapter: want sqlite or kafka, got ${args.adapter}`);
}
const brokers = (args.brokers ?? '').split(',').filter(Boolean);
if (args.adapter === 'kafka' && brokers.length === 0) {
  throw new Error(
    '--adapter kafka needs brokers: --brokers host:port or KAFKA_BROKERS ' +
      '(eval "$(test/services/kafka.sh start)")',
  );
}
const totalEvents = Number(args.events);
const singles = Number(args.singles);
const batchSize = Number(args.batch);
const repoCount = Number(args.repos);

const targets = { replayPerSec: 300_000, batchedPerSec: 100_000, singleP99Ms: 5 };

let counter = 0;
const digest = () => `sha256:${randomBytes(32).toString('hex')}`;
const digests = Array.from({ length: 256 }, digest);
const metadata = { at: new Date().toISOString(), actor: 'bench', cluster: 'bench' };
/** A TagPushed over `repoCount` repos × 100 tags: replays mostly move existing tags. */
const tagEvent = (): ShoalEvent => {
  const n = counter++;
  return makeEvent(
    'TagPushed',
    {
      repo: `bench/repo-${n % repoCount}`,
      tag: `t${Math.floor(n / repoCount) % 100}`,
      digest: digests[n % digests.length] as string,
    },
    { id: `e${n}-${process.pid}`, metadata },
  );
};

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

/** Progress of a phase on stderr: a bar on a terminal, JSON lines with --json, else nothing. */
const phase = (label: string, total: number) =>
  createProgress({ label: `bench:log ${label}`, unit: 'events', total, mode: progressMode(args) });

type Figures = {
  singleAppendsPerSec: number;
  singleP50Ms: number;
  singleP99Ms: number;
  batchedAppendsPerSec: number;
  replayEvents: number;
  replayPerSec: number;
  /** CPU time (user + system, all threads of this process) per phase, in ms. */
  singleCpuMs: number;
  batchedCpuMs: number;
  replayCpuMs: number;
};

const cpuMs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return Math.round((used.user + used.system) / 1000);
};

/** `replayLog`: the handle to replay from, when it must not be the one that appended. */
const run = async (
  log: EventLog,
  store: ProjectionStore,
  replayLog?: () => EventLog,
): Promise<Figures> => {
  // Durable single appends, one event each, one after another.
  const latencies: number[] = [];
  const singlesCpu = process.cpuUsage();
  const singlesStart = process.hrtime.bigint();
  const singlesProgress = phase('single appends', singles);
  for (let i = 0; i < singles; i++) {
    const t0 = process.hrtime.bigint();
    await log.append([tagEvent()]);
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    singlesProgress.increment();
  }
  singlesProgress.stop();
  const singlesMs = Number(process.hrtime.bigint() - singlesStart) / 1e6;
  const singleCpuMs = cpuMs(singlesCpu);
  latencies.sort((a, b) => a - b);

  // Batched appends until the log holds `totalEvents` events.
  const toAppend = Math.max(0, totalEvents - singles);
  const batchCpu = process.cpuUsage();
  const batchStart = process.hrtime.bigint();
  const batchProgress = phase('batched appends', toAppend);
  for (let done = 0; done < toAppend; done += batchSize) {
    const n = Math.min(batchSize, toAppend - done);
    await log.append(Array.from({ length: n }, tagEvent));
    batchProgress.increment(n);
  }
  batchProgress.stop();
  const batchMs = Number(process.hrtime.bigint() - batchStart) / 1e6;
  const batchedCpuMs = cpuMs(batchCpu);

  // Replay the whole log into a fresh build-index projection.
  const source = replayLog === undefined ? log : replayLog();
  const replayCpu = process.cpuUsage();
  const replayProgress = phase('replay', 0);
  const replay = await rebuildProjection({
    log: source,
    store,
    projection: buildIndexProjection,
    progress: replayProgress,
  });
  replayProgress.stop();
  const replayCpuMs = cpuMs(replayCpu);
  if (source !== log) await source.close();
  return {
    singleAppendsPerSec: Math.round((singles * 1000) / singlesMs),
    singleP50Ms: +percentile(latencies, 50).toFixed(3),
    singleP99Ms: +percentile(latencies, 99).toFixed(3),
    batchedAppendsPerSec: Math.round((toAppend * 1000) / batchMs),
    replayEvents: replay.events,
    replayPerSec: Math.round((replay.events * 1000) / replay.ms),
    singleCpuMs,
    batchedCpuMs,
    replayCpuMs,
  };
};

const main = async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-'));
  try {
    if (!args.json) console.log(`bench:log — ${totalEvents} events, ${singles} single appends`);
    const memory = await run(createMemoryEventLog(), createMemoryProjectionStore());
    const log = openSqliteEventLog(join(dir, 'log.db'), { durability: 'full' });
    const store = openSqliteProjectionStore(join(dir, 'projections.db'));
    const sqlite = await run(log, store);
    await store.close();
    await log.close();
    let kafka: Figures | undefined;
    if (args.adapter === 'kafka') {
      const topic = `shoal-bench-${randomBytes(4).toString('hex')}`;
      const client = createKafkaClient({ brokers });
      const open = () => createKafkaEventLog({ kafka: client, topic, replicationFactor: 1 });
      const kafkaLog = open();
      const kafkaStore = openSqliteProjectionStore(join(dir, 'kafka-projections.db'));
      try {
        kafka = await run(kafkaLog, kafkaStore, open);
      } finally {
        await kafkaStore.close();
        await kafkaLog.close();
        const admin = client.admin();
        await admin.connect();
        await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
        await admin.disconnect();
      }
    }

    const verdict = {
      replay: sqlite.replayPerSec >= targets.replayPerSec,
      batched: sqlite.batchedAppendsPerSec >= targets.batchedPerSec,
      singleP99: sqlite.singleP99Ms <= targets.singleP99Ms,
    };
    if (args.json) {
      console.log(JSON.stringify({ events: totalEvents, sqlite, memory, kafka, targets, verdict }));
      return;
    }
    const row = (label: string, key: keyof Figures, unit: string, target?: string) =>
      console.log(
        `  ${label.padEnd(28)} ${String(sqlite[key]).padStart(12)} ${unit.padEnd(9)}` +
          ` memory ${String(memory[key]).padStart(12)}` +
          (kafka === undefined ? '' : ` kafka ${String(kafka[key]).padStart(12)}`) +
          `   ${target ?? ''}`,
      );
    console.log(
      '                                   sqlite              ceiling' +
        (kafka === undefined ? '' : '                kafka'),
    );
    row('single durable appends', 'singleAppendsPerSec', 'events/s');
    row('single append p50', 'singleP50Ms', 'ms');
    row(
      'single append p99',
      'singleP99Ms',
      'ms',
      `target ≤ ${targets.singleP99Ms} ms: ${verdict.singleP99 ? 'met' : 'MISSED'}`,
    );
    row(
      'batched appends',
      'batchedAppendsPerSec',
      'events/s',
      `target ≥ ${targets.batchedPerSec}: ${verdict.batched ? 'met' : 'MISSED'}`,
    );
    row(
      'replay into build-index',
      'replayPerSec',
      'events/s',
      `target ≥ ${targets.replayPerSec}: ${verdict.replay ? 'met' : 'MISSED'}`,
    );
    row('CPU, single appends', 'singleCpuMs', 'ms');
    row('CPU, batched appends', 'batchedCpuMs', 'ms');
    row('CPU, replay', 'replayCpuMs', 'ms');
    console.log(
      `  load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
