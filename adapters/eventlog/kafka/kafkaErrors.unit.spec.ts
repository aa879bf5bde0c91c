import {
  KafkaJSConnectionError,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSRequestTimeoutError,
  KafkaJSSASLAuthenticationError,
} from 'kafkajs';
import { ShoalError } from '../../../domain';
import { translateKafkaError } from './kafkaErrors';

// Protocol errors as kafkajs builds them from a broker's error code.
const protocol = (type: string, retriable: boolean) =>
  new KafkaJSProtocolError({ type, retriable, message: `broker says ${type}`, code: 0 } as never);

describe('translateKafkaError', () => {
  it('given an unreachable or slow broker, then LOG_UNAVAILABLE, retriable', () => {
    for (const error of [
      new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:1'),
      new KafkaJSRequestTimeoutError('Request Produce(key: 0, version: 7) timed out'),
      protocol('NOT_LEADER_FOR_PARTITION', true),
      protocol('NOT_ENOUGH_REPLICAS', true),
      new KafkaJSNumberOfRetriesExceeded(new KafkaJSConnectionError('Connection error'), {
        retryCount: 5,
        retryTime: 1000,
      }),
      // How kafkajs's retrier gives up on a retriable error it could not get past.
      // (the typings omit the options argument that kafkajs's code takes).
      new (KafkaJSNonRetriableError as unknown as new (e: Error, o: object) => Error)(
        new Error('Not leader'),
        { cause: protocol('LEADER_NOT_AVAILABLE', true) },
      ),
    ]) {
      const translated = translateKafkaError(error, 'appending');
      expect(translated).toBeInstanceOf(ShoalError);
      expect(translated).toMatchObject({ code: 'LOG_UNAVAILABLE', retriable: true });
      expect(translated.message).toMatch(/^kafka log: appending: /);
    }
  });

  it('given a batch over message.max.bytes, then EVENT_INVALID', () => {
    const translated = translateKafkaError(protocol('MESSAGE_TOO_LARGE', false), 'appending');
    expect(translated).toMatchObject({ code: 'EVENT_INVALID', retriable: false });
    expect(translated.message).toMatch(/fewer events/);
  });

  it('given refused credentials or permissions, then LOG_UNAVAILABLE, not retriable', () => {
    for (const error of [
      new (KafkaJSSASLAuthenticationError as unknown as new (m: string) => Error)(
        'SASL PLAIN authentication failed',
      ),
      protocol('TOPIC_AUTHORIZATION_FAILED', false),
    ]) {
      const translated = translateKafkaError(error, 'opening topic "t"');
      expect(translated).toMatchObject({ code: 'LOG_UNAVAILABLE', retriable: false });
      expect(translated.message).toMatch(/check credentials and ACLs/);
    }
  });

  it('given another refusal, then LOG_UNAVAILABLE, not retriable, with the reason', () => {
    const translated = translateKafkaError(protocol('INVALID_REPLICATION_FACTOR', false), 'x');
    expect(translated).toMatchObject({ code: 'LOG_UNAVAILABLE', retriable: false });
    expect(translated.detail).toMatchObject({ kafkaType: 'INVALID_REPLICATION_FACTOR' });
  });

  it('given a ShoalError or a non-Kafka error, then it passes or becomes INTERNAL', () => {
    const own = new ShoalError('LOG_CORRUPT', 'bad record');
    expect(translateKafkaError(own, 'x')).toBe(own);
    expect(translateKafkaError(new TypeError('oops'), 'x')).toMatchObject({ code: 'INTERNAL' });
  });
});
