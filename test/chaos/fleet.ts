import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { startS3Server } from '../fixtures/s3Server';
import type { S3Server } from '../fixtures/s3Server';
import { s3Keys } from '../fixtures/s3Server';
import { securityEnv } from '../fixtures/security';
import type { Running } from './processes';
import type { KafkaNode } from '../fixtures/kafkaNodes';
import { kafkaNodes } from '../fixtures/kafkaNodes';
import { freePort } from '../fixtures/ports';
import { runToolAsync } from '../fixtures/processes';
import {
  isRunning,
  launch,
  repoRoot,
  shoalCli,
  signalGroup,
  stopGroup,
  waitForLine,
} from './processes';

// The fleet a soak runs: separate OS processes on this machine.
//   - a Kafka cluster of three KRaft nodes (test/services/kafka.sh, rf 3, min.insync 2);
//   - an S3-compatible backend (versitygw through test/services/s3.sh);
//   - cluster A: 3 origins (R = 2, S3 write-back; origin a-o3's data directory on a small
//     tmpfs so its disk can be filled), 2 build-index (each may run the replicator: one holds
//     the Kafka-group lease), 2 proxies, 2 trackers, 8 agents;
//   - cluster B, replicating from A by rule: an origin, a build-index, a proxy, on a topic of
//     its own on the same brokers.
// Every role keeps its port across restarts (the others' configs name it), and every role runs
// with cluster security on (service tokens), as production does.

export type RoleName = 'origin' | 'build-index' | 'proxy' | 'tracker' | 'agent';

export type Member = {
  readonly name: string;
  readonly role: RoleName;
  readonly cluster: 'a' | 'b';
  readonly url: string;
  /** Every port it listens on (its partition drops them). */
  readonly ports: readonly number[];
  readonly config: string;
  readonly dataDir: string;
  running?: Running;
};

const readyLine: Record<RoleName, RegExp> = {
  origin: /origin \S+ listening on/,
  'build-index': /build-index listening on/,
  proxy: /proxy listening on/,
  tracker: /tracker listening on/,
  agent: /agent \S+ listening on/,
};

const kafkaScript = join(repoRoot, 'test/services/kafka.sh');

export type FleetOptions = {
  readonly dir: string;
  readonly agents: number;
  readonly log: (line: string) => void;
};

export type Fleet = Awaited<ReturnType<typeof startFleet>>;

export const startFleet = async (options: FleetOptions) => {
  const { dir, log } = options;
  mkdirSync(join(dir, 'config'), { recursive: true });
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const run = randomBytes(3).toString('hex');
  const env = securityEnv();

  // --- Kafka: three nodes --------------------------------------------------------------
  const kafka = await kafkaNodes(dir);
  const kafkaCommand = async (node: KafkaNode, command: 'start' | 'stop' | 'status') => {
    const result = await runToolAsync('bash', [kafkaScript, command], {
      env: node.env,
      timeoutMs: 300_000,
    });
    if (result.status !== 0 && command !== 'status') {
      throw new Error(`kafka.sh ${command} (node ${node.id}): ${result.stderr.slice(-2000)}`);
    }
    return result;
  };
  const members: Member[] = [];
  let s3: S3Server | undefined;
  let smallDiskMounted = false;
  const smallDisk = join(dir, 'small-disk');
  const stopAll = async () => {
    await Promise.all(members.map((m) => (m.running ? stopGroup(m.running) : undefined)));
    await Promise.all(kafka.map((node) => kafkaCommand(node, 'stop').catch(() => undefined)));
    try {
      s3?.close();
    } catch {
      // stopped already
    }
    if (smallDiskMounted) {
      try {
        execFileSync('umount', ['-l', smallDisk]);
      } catch {
        // not mounted
      }
    }
  };
  try {
    return await startMembers();
  } catch (error) {
    await stopAll();
    throw error;
  }

  async function startMembers() {
    log(`starting 3 Kafka nodes (KRaft)…`);
    await Promise.all(kafka.map((node) => kafkaCommand(node, 'start')));
    const brokers = kafka.map((n) => `127.0.0.1:${n.port}`);

    // --- the S3 backend ------------------------------------------------------------------
    const s3Port = await freePort();
    log(`starting the S3 backend (versitygw) on ${s3Port}…`);
    s3 = await startS3Server({
      port: s3Port,
      toolsDir: join(dir, 's3'),
      bucket: 'soak',
    });

    // --- origin a-o3's small disk -----------------------------------------------------------
    mkdirSync(smallDisk, { recursive: true });
    if (process.getuid?.() === 0) {
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'tmpfs', smallDisk]);
        smallDiskMounted = true;
      } catch (error) {
        log(`!!! no tmpfs for the full-disk fault (${(error as Error).message.split('\n')[0]})`);
      }
    } else {
      log('!!! not root: no tmpfs for the full-disk fault; it will not be injected');
    }

    // --- configs ---------------------------------------------------------------------------
    const writeConfig = (name: string, body: Record<string, unknown>): string => {
      const path = join(dir, 'config', `${name}.yaml`);
      writeFileSync(path, `# ${name}: written by the soak (test/chaos/fleet.ts)\n${toYaml(body)}`);
      return path;
    };
    const kafkaLog = (cluster: 'a' | 'b', clientId: string) => ({
      adapter: 'kafka',
      kafka: {
        brokers,
        topic: `soak-${run}-${cluster}`,
        clientId,
        replicationFactor: 3,
        createTopic: true,
      },
    });

    const member = async (
      name: string,
      role: RoleName,
      cluster: 'a' | 'b',
      /** The role's own keys; `p2p` is its second port (origins and agents), else 0. */
      body: (p2p: number) => Record<string, unknown>,
      dataDir = join(dir, name),
    ): Promise<Member> => {
      const port = await freePort();
      const extra = role === 'origin' || role === 'agent' ? await freePort() : 0;
      mkdirSync(dataDir, { recursive: true });
      const config = writeConfig(name, {
        ...(role !== 'tracker' && { dataDir }),
        logLevel: 'warn',
        listen: { host: '127.0.0.1', port },
        ...body(extra),
      });
      const m: Member = {
        name,
        role,
        cluster,
        url: `http://127.0.0.1:${port}`,
        ports: extra === 0 ? [port] : [port, extra],
        config,
        dataDir,
      };
      members.push(m);
      return m;
    };

    const origin = (name: string, id: string, cluster: 'a' | 'b', dataDir?: string) =>
      member(
        name,
        'origin',
        cluster,
        (p2p) => ({
          id,
          cluster,
          replicas: cluster === 'a' ? 2 : 1,
          p2p: { port: p2p },
          backend:
            cluster === 'a'
              ? {
                  type: 's3',
                  name: 'soak-s3',
                  prefix: 'a/',
                  s3: {
                    bucket: 'soak',
                    endpoint: (s3 as S3Server).endpoint,
                    forcePathStyle: true,
                    region: 'us-east-1',
                    accessKeyId: s3Keys.accessKeyId,
                    secretAccessKey: s3Keys.secretAccessKey,
                  },
                }
              : { type: 'filesystem', name: 'b-disk', path: join(dir, 'b-backend') },
          writeBack: { minBackoffMs: 500, maxBackoffMs: 5000 },
          healing: { intervalMs: 10_000 },
          // a-o3's disk is a 256 MB tmpfs: keep the watermark below it (the disk fault fills it).
          uploads: { minFreeDiskBytes: 16 * 1024 * 1024 },
          readYourWrites: { timeoutMs: 20_000 },
          log: kafkaLog(cluster, `soak-${name}`),
        }),
        dataDir,
      );

    const [ao1, ao2, ao3] = [
      await origin('a-o1', 'o1', 'a'),
      await origin('a-o2', 'o2', 'a'),
      await origin('a-o3', 'o3', 'a', smallDiskMounted ? smallDisk : undefined),
    ] as [Member, Member, Member];
    const aOrigins = [ao1, ao2, ao3];

    const buildIndex = (name: string, cluster: 'a' | 'b') =>
      member(name, 'build-index', cluster, () => ({
        cluster,
        log: kafkaLog(cluster, `soak-${name}`),
        readYourWrites: { timeoutMs: 20_000 },
        replication:
          cluster === 'a'
            ? {
                enabled: true,
                allowedDestinations: ['http://127.0.0.1:*'],
                source: { originUrl: ao1.url, replicas: 2 },
                lock: { leaseMs: 6000 },
                backoff: { initialMs: 500, maxMs: 5000 },
                timeoutMs: 15_000,
              }
            : { enabled: false },
      }));
    const abi1 = await buildIndex('a-bi1', 'a');
    const abi2 = await buildIndex('a-bi2', 'a');

    const proxy = (name: string, cluster: 'a' | 'b', buildIndexes: Member[]) =>
      member(name, 'proxy', cluster, () => ({
        cluster,
        log: kafkaLog(cluster, `soak-${name}`),
        origins: { urls: [], replicas: cluster === 'a' ? 2 : 1 },
        buildIndex: { urls: buildIndexes.map((b) => b.url) },
        readYourWrites: { timeoutMs: 20_000 },
      }));
    const ap1 = await proxy('a-p1', 'a', [abi1, abi2]);
    const ap2 = await proxy('a-p2', 'a', [abi2, abi1]);

    const tracker = (name: string) =>
      member(name, 'tracker', 'a', () => ({
        origins: { urls: aOrigins.map((o) => o.url) },
      }));
    const trackers = [await tracker('a-t1'), await tracker('a-t2')];

    const agents: Member[] = [];
    for (let i = 1; i <= options.agents; i++) {
      // Half the agents start with each build-index and proxy.
      const even = i % 2 === 0;
      agents.push(
        await member(`a-agent${i}`, 'agent', 'a', (p2p) => ({
          id: `agent${i}`,
          p2p: { port: p2p },
          trackers: { urls: trackers.map((t) => t.url) },
          buildIndex: { urls: (even ? [abi2, abi1] : [abi1, abi2]).map((b) => b.url) },
          proxy: { url: (even ? ap2 : ap1).url },
          cache: { quotaBytes: 512 * 1024 * 1024 },
        })),
      );
    }

    const bo1 = await origin('b-o1', 'o1', 'b');
    const bbi1 = await buildIndex('b-bi1', 'b');
    const bp1 = await proxy('b-p1', 'b', [bbi1]);

    // --- processes -----------------------------------------------------------------------
    const start = async (m: Member): Promise<void> => {
      m.running = launch(process.execPath, [shoalCli, m.role, '--config', m.config], {
        logFile: join(dir, 'logs', `${m.name}.log`),
        env,
      });
      await waitForLine(m.running, readyLine[m.role], 180_000, m.name);
    };
    const startAll = async (group: Member[]) => {
      await Promise.all(group.map((m) => start(m)));
    };

    log(
      'starting cluster A: origins, build-index, proxies, trackers; then agents; then cluster B…',
    );
    await startAll(aOrigins);
    await startAll([abi1, abi2, bo1, bbi1]);
    await startAll([ap1, ap2, ...trackers, bp1]);
    for (let i = 0; i < agents.length; i += 4) await startAll(agents.slice(i, i + 4));

    /** Adds the rule A → B (every soak repository). */
    const addRule = async () => {
      const result = await runToolAsync(
        process.execPath,
        [
          shoalCli,
          'rules',
          'add',
          '--name',
          'a-to-b',
          '--repo',
          'soak/**',
          '--to',
          bp1.url,
          '--url',
          abi1.url,
          '--json',
        ],
        { env },
      );
      if (result.status !== 0) throw new Error(`shoal rules add: ${result.stderr}`);
    };
    await addRule();

    const kafkaPid = async (node: KafkaNode): Promise<number | undefined> => {
      const status = await kafkaCommand(node, 'status');
      const pid = Number(/pid (\d+)/.exec(status.stdout + status.stderr)?.[1]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    };

    return {
      dir,
      env,
      brokers,
      kafka,
      kafkaCommand,
      kafkaPid,
      s3: s3 as S3Server,
      smallDisk: smallDiskMounted ? smallDisk : undefined,
      members,
      a: {
        /** Cluster A's log (a Kafka topic), for the checker's own reading. */
        topic: `soak-${run}-a`,
        /** The origins' ring ids, in the order of `origins`. */
        originIds: ['o1', 'o2', 'o3'],
        origins: aOrigins,
        buildIndexes: [abi1, abi2],
        proxies: [ap1, ap2],
        trackers,
        agents,
      },
      b: { origin: bo1, buildIndex: bbi1, proxy: bp1 },
      start,
      isUp: (m: Member) => m.running !== undefined && isRunning(m.running.child),
      signal: (m: Member, signal: NodeJS.Signals) => {
        if (m.running) signalGroup(m.running.child, signal);
      },
      stop: (m: Member) => (m.running ? stopGroup(m.running) : Promise.resolve()),
      stopAll,
    };
  }
};
