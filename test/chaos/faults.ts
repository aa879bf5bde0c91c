import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  rmdirSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Random } from '../sim/random';
import { seededRandom, shuffle } from '../sim/random';
import type { Fleet, Member } from './fleet';
import type { Fault, FaultKind } from './history';
import { faultKinds } from './history';
import { groupPids } from '../fixtures/processes';
import { delay } from './processes';

// The soak's fault injector: seeded, one fault at a time, a pause of `gapMs` between them.
// Kinds are drawn as shuffled rounds of all six, so a short run still meets each:
//   kill      kill -9 of one Shoal process, restarted 1–3 s later (same config and data);
//   freeze    SIGSTOP of one Shoal process for 10 s (a frozen host: connections open, no answer);
//   broker    kill -9 of one Kafka node, restarted 5 s later;
//   backend   the S3 server stopped for 20 s;
//   disk      origin a-o3's small disk (a tmpfs) filled to the last byte for 15 s;
//   partition one Shoal process cut off from every other for 15 s: iptables drops what
//             reaches its ports and what it sends (its processes moved into a cgroup of
//             their own, matched by `-m cgroup`). Loopback only.
// A kind the machine cannot inject (no root, no iptables, no tmpfs) is recorded as skipped,
// with why, and reported: never silently left out.

export type FaultOptions = {
  readonly seed: number;
  readonly gapMs: readonly [number, number];
  readonly log: (line: string) => void;
};

const cgroupRoot = '/sys/fs/cgroup/unified';

const iptables = (args: string[]) => execFileSync('iptables', ['-w', ...args], { stdio: 'pipe' });

/** Why partitions cannot be injected here, or undefined when they can. */
const partitionUnsupported = (): string | undefined => {
  if (process.getuid?.() !== 0) return 'not root';
  try {
    iptables(['-L', 'OUTPUT', '-n']);
  } catch {
    return 'no iptables (test/services/tools.sh install puts it in)';
  }
  if (!existsSync(join(cgroupRoot, 'cgroup.procs'))) return `no cgroup v2 at ${cgroupRoot}`;
  return undefined;
};

export const createFaults = (fleet: Fleet, options: FaultOptions) => {
  const random: Random = seededRandom(options.seed, 7);
  const faults: Fault[] = [];
  const run = `shoal-soak-${process.pid}`;
  const noPartition = partitionUnsupported();
  /** Partition rules in place, to remove on heal (and on a crash of the soak). */
  const rules: string[][] = [];
  let stopped = false;
  let current: Promise<void> | undefined;
  let wake: (() => void) | undefined;

  const targets = (): Member[] => fleet.members;
  const pickOf = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

  const removeRules = () => {
    while (rules.length > 0) {
      const rule = rules.pop() as string[];
      try {
        iptables(['-D', ...rule]);
      } catch {
        // gone already
      }
    }
  };
  process.once('exit', removeRules);

  const restart = async (m: Member) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await fleet.start(m);
        return;
      } catch (error) {
        if (attempt >= 5) throw error;
        options.log(`  ${m.name} did not come back (attempt ${attempt}); again…`);
        await delay(2000);
      }
    }
  };

  const inject: Record<FaultKind, (fault: Fault) => Promise<void>> = {
    kill: async (fault) => {
      const m = pickOf(targets());
      fault.target = m.name;
      fleet.signal(m, 'SIGKILL');
      await m.running?.exited;
      await delay(1000 + random() * 2000);
      await restart(m);
    },
    freeze: async (fault) => {
      const m = pickOf(targets());
      fault.target = m.name;
      fleet.signal(m, 'SIGSTOP');
      await delay(10_000);
      fleet.signal(m, 'SIGCONT');
    },
    broker: async (fault) => {
      const node = pickOf(fleet.kafka);
      fault.target = `kafka-${node.id}`;
      const pid = await fleet.kafkaPid(node);
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
      await delay(5000);
      await fleet.kafkaCommand(node, 'start');
    },
    backend: async (fault) => {
      fault.target = 's3';
      fleet.s3.stop();
      await delay(20_000);
      fleet.s3.start();
    },
    disk: async (fault) => {
      const disk = fleet.smallDisk;
      fault.target = 'a-o3 disk';
      if (disk === undefined) {
        fault.skipped = 'no small disk (tmpfs needs root)';
        return;
      }
      const filler = join(disk, 'soak-filler');
      const fd = openSync(filler, 'w');
      const chunk = Buffer.alloc(1024 * 1024);
      try {
        for (;;) writeSync(fd, chunk);
      } catch {
        // ENOSPC: full
      } finally {
        closeSync(fd);
      }
      await delay(15_000);
      rmSync(filler, { force: true });
    },
    partition: async (fault) => {
      const m = pickOf(targets());
      fault.target = m.name;
      if (noPartition !== undefined) {
        fault.skipped = noPartition;
        return;
      }
      const pgid = m.running?.child.pid;
      if (pgid === undefined) return;
      const group = join(cgroupRoot, run, m.name);
      mkdirSync(group, { recursive: true });
      for (const pid of groupPids(pgid)) {
        try {
          writeFileSync(join(group, 'cgroup.procs'), String(pid));
        } catch {
          // exited meanwhile
        }
      }
      const added: string[][] = [
        ['OUTPUT', '-m', 'cgroup', '--path', `${run}/${m.name}`, '-j', 'DROP'],
        ...m.ports.map((port) => [
          'INPUT',
          '-i',
          'lo',
          '-p',
          'tcp',
          '--dport',
          String(port),
          '-j',
          'DROP',
        ]),
      ];
      for (const rule of added) {
        iptables(['-I', ...rule]);
        rules.push(rule);
      }
      await delay(15_000);
      removeRules();
    },
  };

  const loop = async () => {
    let round: FaultKind[] = [];
    while (!stopped) {
      const [lo, hi] = options.gapMs;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, lo + random() * (hi - lo));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (stopped) break;
      if (round.length === 0) round = shuffle([...faultKinds], random);
      const kind = round.pop() as FaultKind;
      const fault: Fault = { kind, target: '', start: Date.now(), end: 0 };
      faults.push(fault);
      current = inject[kind](fault).catch((error: unknown) => {
        options.log(`!!! fault ${kind} failed: ${(error as Error).message.split('\n')[0]}`);
        fault.skipped = `failed: ${(error as Error).message.split('\n')[0]}`;
      });
      await current;
      fault.end = Date.now();
      options.log(
        `fault ${kind.padEnd(9)} ${fault.target.padEnd(12)} ${((fault.end - fault.start) / 1000).toFixed(1)} s` +
          (fault.skipped === undefined ? '' : `  NOT INJECTED: ${fault.skipped}`),
      );
    }
  };

  let looping: Promise<void> | undefined;
  return {
    faults,
    partitionUnsupported: noPartition,
    start: () => {
      looping = loop();
    },
    /** Stops injecting; the fault under way runs to its end and heals. */
    stop: async () => {
      stopped = true;
      wake?.();
      await looping;
      removeRules();
    },
    /** Removes the partition cgroups (once the fleet's processes are gone). */
    cleanup: () => {
      try {
        for (const name of readdirSync(join(cgroupRoot, run))) {
          rmdirSync(join(cgroupRoot, run, name));
        }
        rmdirSync(join(cgroupRoot, run));
      } catch {
        // never made, or a process still in it (it exits with the fleet)
      }
    },
  };
};
