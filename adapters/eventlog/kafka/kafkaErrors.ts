import { ShoalError, isShoalError } from '../../../domain';

type KafkaLikeError = Error & {
  retriable?: unknown;
  type?: unknown;
  cause?: unknown;
  originalError?: unknown;
  broker?: unknown;
};

/** kafkajs errors that mean "the cluster could not be reached or did not answer in time". */
const unreachable = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSTopicMetadataNotLoaded',
  'KafkaJSStaleTopicMetadataAssignment',
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSLockTimeout',
  'KafkaJSTimeout',
]);

/** Protocol errors a client cannot fix by retrying: credentials and permissions. */
const refused = new Set([
  'SASL_AUTHENTICATION_FAILED',
  'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
]);

const tooLarge = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/** The error and what it wraps, outermost first (kafkajs nests through retries). */
const chainOf = (error: unknown): KafkaLikeError[] => {
  const chain: KafkaLikeError[] = [];
  let current: unknown = error;
  while (current instanceof Error && chain.length < 8 && !chain.includes(current)) {
    chain.push(current as KafkaLikeError);
    const next: unknown =
      (current as KafkaLikeError).originalError ?? (current as KafkaLikeError).cause;
    current = next;
  }
  return chain;
};

/**
 * Vendor errors stop here. Every kafkajs failure leaves as a ShoalError:
 * - the broker cannot be reached, timed out, or answered with a retriable protocol error
 *   (not leader, not enough replicas, …): `LOG_UNAVAILABLE`, retriable — an append that
 *   failed so may still have been written; retrying it is safe (ids make it idempotent);
 * - a batch over the broker's `message.max.bytes`: `EVENT_INVALID`;
 * - authentication, authorization and every other refusal: `LOG_UNAVAILABLE`, not
 *   retriable, with the broker's reason in the message.
 */
export const translateKafkaError = (error: unknown, doing: string): ShoalError => {
  if (isShoalError(error)) return error;
  const chain = chainOf(error);
  const top = chain[0];
  if (top === undefined) {
    return new ShoalError('INTERNAL', `kafka log: ${doing}: ${String(error)}`, { cause: error });
  }
  const root = chain[chain.length - 1] as KafkaLikeError;
  const type = chain.map((e) => e.type).find((t): t is string => typeof t === 'string');
  const detail: Record<string, unknown> = { kafka: root.name };
  if (type !== undefined) detail.kafkaType = type;
  const message = `kafka log: ${doing}: ${root.message}`;
  if (type !== undefined && tooLarge.has(type)) {
    return new ShoalError(
      'EVENT_INVALID',
      `${message} (the batch is larger than the broker's message.max.bytes; append fewer ` +
        'events at a time)',
      { cause: error, detail: { ...detail, field: '(batch)' } },
    );
  }
  if (
    (type !== undefined && refused.has(type)) ||
    chain.some((e) => e.name === 'KafkaJSSASLAuthenticationError')
  ) {
    return new ShoalError('LOG_UNAVAILABLE', `${message} (check credentials and ACLs)`, {
      cause: error,
      detail,
      retriable: false,
    });
  }
  const isKafka = chain.some((e) => e.name.startsWith('KafkaJS'));
  if (!isKafka) {
    return new ShoalError('INTERNAL', message, { cause: error, detail });
  }
  const transient =
    chain.some((e) => unreachable.has(e.name)) ||
    chain.some((e) => e.name === 'KafkaJSProtocolError' && e.retriable === true) ||
    // kafkajs gave up after its own retries of something retriable.
    (chain.some((e) => e.name === 'KafkaJSNumberOfRetriesExceeded') && root.retriable === true);
  return new ShoalError('LOG_UNAVAILABLE', message, {
    cause: error,
    detail,
    retriable: transient,
  });
};
