import { Writable } from 'node:stream';
import { ShoalError } from '../../domain';
import { createLogger, scrubSecrets } from './logger';

/** A logger writing into memory; `text()` is everything it wrote. */
const capture = () => {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return {
    logger: createLogger({ level: 'trace', destination: stream }),
    text: () => lines.join(''),
  };
};

describe('logs never carry credentials', () => {
  it('redacts authorization headers and secret fields by path', () => {
    const { logger, text } = capture();
    logger.info(
      {
        req: { headers: { authorization: 'Basic YWxpY2U6czNjcmV0', host: 'x' } },
        headers: { authorization: 'Bearer eyJhbGciOiJFZERTQSJ9.e30.sig' },
        backend: { s3: { secretAccessKey: 'AKIA-secret', bucket: 'b' }, password: 'pw1' },
        replication: { credentials: { 'h:5000': { username: 'u', password: 'pw2' } } },
      },
      'request',
    );
    const out = text();
    expect(out).not.toMatch(/YWxpY2U6czNjcmV0|eyJhbGci|AKIA-secret|pw1|pw2/);
    expect(out).toContain('[redacted]');
    expect(out).toContain('"bucket":"b"');
  });

  it('scrubs Basic and Bearer values and URL passwords from messages and errors', () => {
    const { logger, text } = capture();
    const error = new ShoalError(
      'DENIED',
      'upstream said 401 to Authorization: Bearer abcdef123456 at https://bob:hunter2@up.example',
    );
    logger.warn({ err: error }, 'retrying with Basic Ym9iOmh1bnRlcjI=');
    const out = text();
    expect(out).not.toMatch(/abcdef123456|hunter2|Ym9iOmh1bnRlcjI/);
    expect(out).toContain('Bearer [redacted]');
    expect(out).toContain('Basic [redacted]');
    expect(scrubSecrets('no secrets here')).toBe('no secrets here');
  });
});
