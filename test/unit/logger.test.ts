/** The loggers' censoring (common/observability/logger.ts): secrets never reach a log line. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { recordingLogger } from '../helpers/logger.js';

/** A logger censoring as Kurir's do; `lines()` parses what it wrote, `raw()` is the text itself. */
function capture() {
  const { logger, lines } = recordingLogger('debug');
  return { logger, lines: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>), raw: () => lines.join('\n') };
}

describe('log censoring', () => {
  it('censors the secret fields of a line, and of the objects it holds', () => {
    const { logger, lines, raw } = capture();
    logger.info(
      {
        code: '493817',
        to: '+6281234567890',
        text: 'Your code is 493817',
        codeMac: 'mac',
        codeSealed: 'sealed',
        apiKey: 'kurir_live_abc',
        secret: 's3cret',
        verification: { id: 'ver_1', to: '+6281234567890', code: '493817', purpose: 'login' },
        destination: '+62812****7890',
      },
      'created',
    );
    const [line] = lines();
    for (const field of ['code', 'to', 'text', 'codeMac', 'codeSealed', 'apiKey', 'secret']) assert.equal(line?.[field], '[redacted]', field);
    assert.deepEqual(line?.verification, { id: 'ver_1', to: '[redacted]', code: '[redacted]', purpose: 'login' });
    assert.equal(line?.destination, '+62812****7890');
    assert.equal(line?.msg, 'created');
    assert.doesNotMatch(raw(), /493817|6281234567890|kurir_live_abc|s3cret/);
  });

  it('censors credentials in headers and in a request’s headers, keeping the other headers', () => {
    const { logger, lines, raw } = capture();
    logger.warn({ headers: { Authorization: 'Bearer k1', 'ycloud-signature': 't=1,s=abc', accept: 'json' } }, 'outbound');
    logger.warn({ req: { method: 'POST', headers: { authorization: 'Bearer k2', 'x-api-key': 'k3', host: 'kurir' } } }, 'inbound');
    const [outbound, inbound] = lines();
    assert.deepEqual(outbound?.headers, { Authorization: '[redacted]', 'ycloud-signature': '[redacted]', accept: 'json' });
    assert.deepEqual(inbound?.req, { method: 'POST', headers: { authorization: '[redacted]', 'x-api-key': '[redacted]', host: 'kurir' } });
    assert.doesNotMatch(raw(), /Bearer|k3|s=abc/);
  });

  it('censors a child logger’s bindings and a logged error’s fields, keeping its message and stack', () => {
    const { logger, lines } = capture();
    const error = Object.assign(new Error('provider refused'), { to: '+6281234567890', status: 400 });
    logger.child({ jobId: 'send:ver_1:1', to: '+6281234567890' }).error({ err: error }, 'send failed');
    const [line] = lines();
    assert.equal(line?.jobId, 'send:ver_1:1');
    assert.equal(line?.to, '[redacted]');
    const err = line?.err as Record<string, unknown>;
    assert.equal(err.message, 'provider refused');
    assert.equal(err.status, 400);
    assert.equal(err.to, '[redacted]');
    assert.match(String(err.stack), /provider refused/);
  });

  it('never changes the objects it was given', () => {
    const { logger } = capture();
    const verification = { id: 'ver_1', to: '+6281234567890' };
    const headers = { authorization: 'Bearer k1' };
    const error = Object.assign(new Error('x'), { code: 'ECONNRESET' });
    logger.info({ verification, headers, err: error }, 'line');
    assert.equal(verification.to, '+6281234567890');
    assert.equal(headers.authorization, 'Bearer k1');
    assert.equal(error.code, 'ECONNRESET');
  });
});
