import Fastify from 'fastify';
import { ShoalError } from '../../../domain';
import { ociErrorHandler, withStatus } from './ociErrorHandler';

/** Answers one request by throwing `error` through the OCI error handler. */
const answer = async (error: unknown) => {
  const app = Fastify();
  app.setErrorHandler(ociErrorHandler);
  app.get('/v2/x', async () => {
    throw error;
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const response = await fetch(`${url}/v2/x`);
    const body = (await response.json()) as { errors: Array<{ code: string; message: string }> };
    return { status: response.status, headers: response.headers, errors: body.errors };
  } finally {
    await app.close();
  }
};

describe('ociErrorHandler', () => {
  it('answers the log being unavailable or closed as UNAVAILABLE, retriable', async () => {
    for (const code of ['LOG_UNAVAILABLE', 'LOG_CLOSED', 'POSITION_NOT_REACHED'] as const) {
      const { status, errors } = await answer(new ShoalError(code, 'not now'));
      expect(status).toBe(503);
      expect(errors[0]?.code).toBe('UNAVAILABLE');
    }
    const { headers } = await answer(new ShoalError('LOG_UNAVAILABLE', 'locked'));
    expect(headers.get('retry-after')).toBe('1');
  });

  it('answers a range outside the blob with 416 RANGE_INVALID', async () => {
    const { status, errors } = await answer(new ShoalError('RANGE_INVALID', 'outside'));
    expect(status).toBe(416);
    expect(errors[0]?.code).toBe('RANGE_INVALID');
  });

  it('lets one error carry its own status and headers', async () => {
    const error = withStatus(new ShoalError('SIZE_INVALID', 'too large'), {
      status: 413,
      headers: { 'X-Why': 'limit' },
    });
    const { status, headers, errors } = await answer(error);
    expect(status).toBe(413);
    expect(headers.get('x-why')).toBe('limit');
    expect(errors[0]?.code).toBe('SIZE_INVALID');
  });

  it('never shows the message of an unexpected failure', async () => {
    const { status, errors } = await answer(new Error('secret stack detail'));
    expect(status).toBe(500);
    expect(errors[0]).toEqual({ code: 'UNKNOWN', message: 'internal error' });
  });

  it('never shows internal addresses, upstream URLs or user names in a 5xx', async () => {
    const leaks = [
      new ShoalError(
        'SERVICE_UNAVAILABLE',
        'POST http://10.0.3.7:5003/internal/uploads: ECONNRESET',
      ),
      new ShoalError(
        'STORAGE_UNAVAILABLE',
        'registry backend "hub" (https://alice:s3cret@upstream.internal): 401 for user alice',
        { detail: { upstream: 'https://upstream.internal' } },
      ),
      new ShoalError('LOG_UNAVAILABLE', 'kafka broker 10.0.9.1:9092 unreachable'),
    ];
    for (const error of leaks) {
      const { status, errors } = await answer(error);
      expect(status).toBe(503);
      const text = JSON.stringify(errors);
      expect(text).not.toMatch(/10\.0\.|upstream|alice|s3cret|http/);
      expect(errors[0]?.message).toMatch(/try again/);
    }
  });
});
