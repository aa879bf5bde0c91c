import type { Admin } from 'kafkajs';
import { ConfigResourceTypes } from 'kafkajs';
import { ShoalError } from '../../../domain';

/** Half the replicas, rounded up: 1 for 1 or 2, 2 for 3 or 4, 3 for 5. */
const halfOf = (replicas: number) => Math.max(1, Math.ceil(replicas / 2));

const topicRefused = (topic: string, why: string) =>
  new ShoalError('CONFIG_INVALID', `kafka log: topic "${topic}" ${why}`, { detail: { topic } });

/**
 * Calls `fn` until it answers `ready` (or for `forMs`, 15 s): a broker that has not yet heard
 * of a topic just created elsewhere answers UNKNOWN_TOPIC_OR_PARTITION for a moment, to a
 * metadata request as to a config request — and the producer and consumer may ask another
 * broker than the admin client did.
 */
export const whileTopicNew = async <T>(
  fn: () => Promise<T>,
  ready: (value: T) => boolean = () => true,
  forMs = 15_000,
): Promise<T> => {
  const deadline = Date.now() + forMs;
  for (;;) {
    try {
      const value = await fn();
      if (ready(value) || Date.now() > deadline) return value;
    } catch (error) {
      const type = (error as { type?: string }).type;
      if (type !== 'UNKNOWN_TOPIC_OR_PARTITION' || Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
};

/** The topic's metadata once every partition has a leader. */
const topicMetadata = (admin: Admin, topic: string) =>
  whileTopicNew(
    () => admin.fetchTopicMetadata({ topics: [topic] }),
    (metadata) =>
      (metadata.topics.find((t) => t.name === topic)?.partitions ?? []).every((p) => p.leader >= 0),
  );

/**
 * Makes sure `topic` can hold Shoal's log: creates it when missing (one partition, infinite
 * retention, `min.insync.replicas` half the replicas unless given) unless `createTopic` is
 * false, then refuses a topic with more than one partition or a retention that would lose
 * events (`CONFIG_INVALID`). Another process creating it at the same time is fine.
 */
export const ensureLogTopic = async (
  admin: Admin,
  topic: string,
  options: {
    readonly createTopic?: boolean;
    readonly replicationFactor: number;
    readonly minInsyncReplicas?: number;
  },
): Promise<void> => {
  const { replicationFactor } = options;
  const existing = await admin.listTopics();
  if (!existing.includes(topic)) {
    if (options.createTopic === false) {
      throw topicRefused(topic, 'does not exist (and createTopic is false): create it');
    }
    const minInsync = options.minInsyncReplicas ?? halfOf(replicationFactor);
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic,
            numPartitions: 1,
            replicationFactor,
            configEntries: [
              { name: 'retention.ms', value: '-1' },
              { name: 'retention.bytes', value: '-1' },
              { name: 'cleanup.policy', value: 'delete' },
              { name: 'min.insync.replicas', value: String(minInsync) },
              { name: 'unclean.leader.election.enable', value: 'false' },
            ],
          },
        ],
      });
    } catch (error) {
      // Another process created it first: fine, it is checked below like any other. On a
      // cluster of several brokers, kafkajs's wait for the new partition's leader can ask a
      // broker that has not heard of the topic yet: created all the same; waited for below.
      const errors = (error as { errors?: { type?: string }[] }).errors ?? [];
      const type = (error as { type?: string }).type;
      if (
        !errors.some((e) => e.type === 'TOPIC_ALREADY_EXISTS') &&
        type !== 'UNKNOWN_TOPIC_OR_PARTITION'
      ) {
        throw error;
      }
    }
  }
  const metadata = await topicMetadata(admin, topic);
  const partitions = metadata.topics.find((t) => t.name === topic)?.partitions.length ?? 0;
  if (partitions !== 1) {
    throw topicRefused(
      topic,
      `has ${partitions} partitions: Shoal needs exactly one, for one total order of ` +
        'events (use another topic, or recreate this one with one partition)',
    );
  }
  const described = await whileTopicNew(
    () =>
      admin.describeConfigs({
        includeSynonyms: false,
        resources: [
          {
            type: ConfigResourceTypes.TOPIC,
            name: topic,
            configNames: ['retention.ms', 'retention.bytes', 'cleanup.policy'],
          },
        ],
      }),
    () => true,
  );
  const entries = described.resources[0]?.configEntries ?? [];
  const value = (name: string) => entries.find((e) => e.configName === name)?.configValue;
  const wrong = [
    value('retention.ms') !== '-1' ? `retention.ms=${value('retention.ms')}` : undefined,
    value('retention.bytes') !== '-1' ? `retention.bytes=${value('retention.bytes')}` : undefined,
    value('cleanup.policy') !== 'delete' ? `cleanup.policy=${value('cleanup.policy')}` : undefined,
  ].filter((w): w is string => w !== undefined);
  if (wrong.length > 0) {
    throw topicRefused(
      topic,
      `would lose events (${wrong.join(', ')}): Shoal's log needs retention.ms=-1, ` +
        'retention.bytes=-1 and cleanup.policy=delete',
    );
  }
};
