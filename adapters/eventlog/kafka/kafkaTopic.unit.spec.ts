import { whileTopicNew } from './kafkaTopic';

/** An error as kafkajs throws it for a broker that has not heard of the topic yet. */
const unknownTopic = () =>
  Object.assign(new Error('This server does not host this topic-partition'), {
    type: 'UNKNOWN_TOPIC_OR_PARTITION',
  });

describe('whileTopicNew (a topic just created on another broker)', () => {
  it('retries while the broker does not know the topic yet, then answers', async () => {
    let calls = 0;
    const answer = await whileTopicNew(async () => {
      calls += 1;
      if (calls < 3) throw unknownTopic();
      return 'subscribed';
    });
    expect(answer).toBe('subscribed');
    expect(calls).toBe(3);
  });

  it('throws any other error at once', async () => {
    let calls = 0;
    await expect(
      whileTopicNew(async () => {
        calls += 1;
        throw Object.assign(new Error('not authorized'), { type: 'TOPIC_AUTHORIZATION_FAILED' });
      }),
    ).rejects.toThrow('not authorized');
    expect(calls).toBe(1);
  });

  it('gives up with the broker error once its time is up', async () => {
    await expect(
      whileTopicNew(
        async () => {
          throw unknownTopic();
        },
        () => true,
        300,
      ),
    ).rejects.toThrow('does not host this topic-partition');
  });
});
