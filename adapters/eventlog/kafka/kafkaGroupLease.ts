import { hostname } from 'node:os';
import type { Admin, Consumer, PartitionAssigner } from 'kafkajs';
import { AssignerProtocol } from 'kafkajs';
import type { Lease, LeaseHolder } from '../../../domain';
import type { KafkaClientOptions } from './kafkaClient';
import { createKafkaClient } from './kafkaClient';

export type KafkaGroupLeaseOptions = KafkaClientOptions & {
  /** The log's topic: one partition, which the group's members are assigned by turns. */
  readonly topic: string;
  /** One group per lease (`shoal-replicator.<cluster>`). */
  readonly groupId: string;
  /**
   * How long the group coordinator waits for a silent member before it gives the lease to
   * another (Kafka's session timeout; the broker allows 6–300 s by default).
   */
  readonly sessionTimeoutMs: number;
};

/** What each member tells the group about itself (the member metadata's user data). */
type MemberInfo = { readonly pid: number; readonly host: string; readonly holding: boolean };

const protocolName = 'ShoalLease';

const decodeInfo = (metadata: Buffer): MemberInfo | undefined => {
  try {
    const decoded = AssignerProtocol.MemberMetadata.decode(metadata);
    return decoded === null ? undefined : (JSON.parse(decoded.userData.toString()) as MemberInfo);
  } catch {
    return undefined;
  }
};

/**
 * A lease held through Kafka's group membership, for replicators on many hosts sharing one
 * Kafka log (a file lease covers one host only). Every contender joins the consumer group
 * `groupId` on the log's topic, whose one partition goes to exactly one member: that member
 * holds the lease. The group coordinator is the referee: a member that stops heartbeating (a
 * dead or cut-off host) is dropped after `sessionTimeoutMs` and the partition goes to another;
 * one that leaves (`release`) hands it over at once.
 *
 * - **Sticky.** The assignor keeps the partition with the member that held it, so a contender
 *   that joins or restarts does not take the lease from a working holder.
 * - **Nothing is read.** The holder pauses the partition at once; members only heartbeat.
 * - **Lost before it is taken.** A holder counts itself out as soon as a rebalance starts or
 *   when its last heartbeat is older than 4/5 of the session timeout, before the coordinator
 *   can give the partition to another. Replication is idempotent anyway: the lease saves
 *   double work; it is not what keeps data right.
 */
export const createKafkaGroupLease = (options: KafkaGroupLeaseOptions): Lease => {
  const { topic, groupId, sessionTimeoutMs } = options;
  const self = { pid: process.pid, host: hostname() };
  const kafka = createKafkaClient({ ...options, clientId: options.clientId ?? 'shoal-replicator' });
  let consumer: Consumer | undefined;
  let admin: Admin | undefined;
  let starting: Promise<void> | undefined;
  let assigned = false;
  /** Whether this member held the partition at its last assignment (told to the assignor). */
  let holding = false;
  let aliveAt = 0;
  const now = () => performance.now();

  const assigner: PartitionAssigner = () => ({
    name: protocolName,
    version: 1,
    protocol: ({ topics }) => ({
      name: protocolName,
      metadata: AssignerProtocol.MemberMetadata.encode({
        version: 1,
        topics,
        userData: Buffer.from(JSON.stringify({ ...self, holding } satisfies MemberInfo)),
      }),
    }),
    // Run by the group's leader (one of the members): the partition stays with its holder,
    // else goes to the first member by id.
    assign: async ({ members }) => {
      const sorted = [...members].sort((a, b) => a.memberId.localeCompare(b.memberId));
      const chosen =
        sorted.find((m) => decodeInfo(m.memberMetadata)?.holding === true) ?? sorted[0];
      return sorted.map((member) => ({
        memberId: member.memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: 1,
          assignment: member === chosen ? { [topic]: [0] } : {},
          userData: Buffer.alloc(0),
        }),
      }));
    },
  });

  const start = (): Promise<void> =>
    (starting ??= (async () => {
      const joined = kafka.consumer({
        groupId,
        sessionTimeout: sessionTimeoutMs,
        rebalanceTimeout: sessionTimeoutMs,
        heartbeatInterval: Math.max(500, Math.floor(sessionTimeoutMs / 6)),
        maxWaitTimeInMs: Math.max(200, Math.floor(sessionTimeoutMs / 12)),
        partitionAssigners: [assigner],
        allowAutoTopicCreation: false,
      });
      const { GROUP_JOIN, HEARTBEAT, REBALANCING, CRASH, STOP } = joined.events;
      joined.on(GROUP_JOIN, ({ payload }) => {
        assigned = (payload.memberAssignment[topic] ?? []).includes(0);
        holding = assigned;
        aliveAt = now();
        if (assigned) joined.pause([{ topic }]);
      });
      joined.on(HEARTBEAT, () => {
        aliveAt = now();
      });
      joined.on(REBALANCING, () => {
        assigned = false;
      });
      const lost = () => {
        assigned = false;
        holding = false;
      };
      joined.on(CRASH, ({ payload }) => {
        lost();
        // kafkajs restarts the consumer after a retriable crash; otherwise start anew next try.
        if (!payload.restart) {
          starting = undefined;
          void joined.disconnect().catch(() => undefined);
        }
      });
      joined.on(STOP, lost);
      consumer = joined;
      try {
        await joined.connect();
        await joined.subscribe({ topics: [topic], fromBeginning: false });
        await joined.run({ autoCommit: false, eachBatch: async () => undefined });
      } catch (error) {
        starting = undefined;
        await joined.disconnect().catch(() => undefined);
        throw error;
      }
    })());

  const held = () => assigned && now() - aliveAt < (sessionTimeoutMs * 4) / 5;

  return {
    async tryAcquire() {
      await start();
      return held();
    },

    async renew() {
      return held();
    },

    async release() {
      const leaving = consumer;
      consumer = undefined;
      starting = undefined;
      assigned = false;
      holding = false;
      await leaving?.disconnect();
      await admin?.disconnect();
      admin = undefined;
    },

    async holder(): Promise<LeaseHolder | undefined> {
      if (admin === undefined) {
        admin = kafka.admin();
        await admin.connect();
      }
      const { groups } = await admin.describeGroups([groupId]);
      for (const member of groups[0]?.members ?? []) {
        const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment);
        if (!(assignment?.assignment[topic] ?? []).includes(0)) continue;
        const info = decodeInfo(member.memberMetadata);
        return {
          pid: info?.pid ?? 0,
          host: info?.host ?? member.clientHost.replace(/^\//, ''),
          token: member.memberId,
        };
      }
      return undefined;
    },
  };
};
