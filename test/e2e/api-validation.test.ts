import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { keysOf } from '../helpers/redis.js';
import { magicNumber, startKurir, type HttpReply, type KurirHarness } from '../helpers/kurir.js';

/** Bad input gets a clear problem+json answer and changes nothing. */
let k: KurirHarness;

before(async () => {
  k = await startKurir();
});
after(async () => {
  await k.close();
});

function assertProblem(reply: HttpReply, status: number, code: string): void {
  assert.equal(reply.status, status, reply.text);
  assert.match(reply.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(reply.body.code, code);
  assert.equal(reply.body.status, status);
  assert.equal(typeof reply.body.title, 'string');
  assert.equal(typeof reply.body.type, 'string');
}

async function verificationKeys(): Promise<string[]> {
  return (await keysOf(k.redis, k.prefix)).filter((key) => key.includes('}:ver_'));
}

describe('authentication', () => {
  test('no Authorization header → 401 with WWW-Authenticate', async () => {
    const reply = await k.request('POST', '/v1/verifications', { tenant: null, body: { to: magicNumber('0000'), purpose: 'login' } });
    assertProblem(reply, 401, 'unauthorized');
    assert.match(reply.headers.get('www-authenticate') ?? '', /^Bearer/);
  });

  test('a wrong key, a Basic header and a bare key → 401', async () => {
    for (const authorization of ['Bearer not-a-key-0000000000', 'Basic YWRtaW46YWRtaW4=', 'acme_test_key_0000000001', 'Bearer ']) {
      const reply = await k.request('GET', '/v1/verifications/ver_000000000000000000000000', {
        tenant: null,
        headers: { Authorization: authorization },
      });
      assertProblem(reply, 401, 'unauthorized');
    }
  });
});

describe('create validation', () => {
  const cases: [string, unknown, number, string][] = [
    ['bad phone', { to: '+62123', purpose: 'login' }, 400, 'invalid_destination'],
    ['number without +', { to: '6281234560000', purpose: 'login' }, 400, 'invalid_destination'],
    ['letters in number', { to: '+62812abc60000', purpose: 'login' }, 400, 'invalid_destination'],
    ['full-width digits', { to: '+６２８１２３４５６００００', purpose: 'login' }, 400, 'invalid_destination'],
    ['bad email', { to: 'user@@example', purpose: 'login' }, 400, 'invalid_destination'],
    ['fixed-line number', { to: '+442079460958', purpose: 'login' }, 403, 'destination_not_allowed'],
    ['unknown purpose', { to: magicNumber('0000'), purpose: 'karaoke' }, 400, 'unknown_purpose'],
    ['missing purpose', { to: magicNumber('0000') }, 400, 'validation_failed'],
    ['wrong type for to', { to: 6281234560000, purpose: 'login' }, 400, 'validation_failed'],
    ['wrong type for ttl', { to: magicNumber('0000'), purpose: 'login', ttlSeconds: '300' }, 400, 'validation_failed'],
    ['ttl above 15 minutes', { to: magicNumber('0000'), purpose: 'login', ttlSeconds: 3600 }, 400, 'validation_failed'],
    ['code length 3', { to: magicNumber('0000'), purpose: 'login', codeLength: 3 }, 400, 'validation_failed'],
    ['unknown channel', { to: magicNumber('0000'), purpose: 'login', channel: 'pigeon' }, 400, 'validation_failed'],
    ['unknown field', { to: magicNumber('0000'), purpose: 'login', chanel: 'sms' }, 400, 'validation_failed'],
    ['email channel to a phone', { to: magicNumber('0000'), purpose: 'login', channel: 'email' }, 400, 'channel_not_allowed'],
    ['sms channel to an email', { to: 'a@example.com', purpose: 'login', channel: 'sms' }, 400, 'channel_not_allowed'],
    ['array body', [{ to: magicNumber('0000'), purpose: 'login' }], 400, 'validation_failed'],
    ['bad context ip', { to: magicNumber('0000'), purpose: 'login', context: { ip: '999.1.1.1' } }, 400, 'validation_failed'],
  ];
  for (const [name, body, status, code] of cases) {
    test(`${name} → ${status} ${code}, nothing stored`, async () => {
      const before = (await verificationKeys()).length;
      const reply = await k.request('POST', '/v1/verifications', { body });
      assertProblem(reply, status, code);
      assert.equal((await verificationKeys()).length, before);
    });
  }

  test('validation problems list the offending fields', async () => {
    const reply = await k.request('POST', '/v1/verifications', { body: { to: 5, purpose: 'login', extra: true } });
    assertProblem(reply, 400, 'validation_failed');
    const errors = reply.body.errors as { path: string }[];
    assert.ok(errors.some((error) => error.path === 'to'));
  });

  test('malformed JSON → 400 invalid_json', async () => {
    const reply = await k.request('POST', '/v1/verifications', { rawBody: '{"to": "+62', headers: { 'Content-Type': 'application/json' } });
    assertProblem(reply, 400, 'invalid_json');
  });

  test('a body that is not JSON → 415', async () => {
    const reply = await k.request('POST', '/v1/verifications', { rawBody: 'to=+6281234560000', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assertProblem(reply, 415, 'unsupported_media_type');
  });

  test('a huge body → 413 and the process stays up', async () => {
    const reply = await k.request('POST', '/v1/verifications', { body: { to: magicNumber('0000'), purpose: 'login', pad: 'x'.repeat(200_000) } });
    assertProblem(reply, 413, 'payload_too_large');
    assert.equal((await k.request('GET', '/healthz')).status, 200);
  });

  test('an invalid Idempotency-Key → 400', async () => {
    const reply = await k.create({ to: magicNumber('0000'), purpose: 'login' }, { 'Idempotency-Key': 'x'.repeat(300) });
    assertProblem(reply, 400, 'invalid_idempotency_key');
  });
});

describe('other endpoints', () => {
  test('check with a malformed code → 400, attempts untouched', async () => {
    const created = await k.create({ to: magicNumber('0000'), purpose: 'login' });
    const id = String(created.body.id);
    for (const code of ['12a456', '', '１２３４５６', 12345, '1234567890123']) {
      assertProblem(await k.request('POST', `/v1/verifications/${id}/check`, { body: { code } }), 400, 'validation_failed');
    }
    assert.equal((await k.get(id)).attemptsRemaining, 5);
  });

  test('unknown ids, malformed ids and unknown paths → 404 problem', async () => {
    assertProblem(await k.request('GET', '/v1/verifications/ver_000000000000000000000000'), 404, 'not_found');
    assertProblem(await k.request('GET', '/v1/verifications/..%2F..%2Fetc'), 404, 'not_found');
    assertProblem(await k.request('POST', '/v1/verifications/nope/cancel'), 404, 'not_found');
    assertProblem(await k.request('GET', '/v1/nothing-here'), 404, 'not_found');
  });

  test('resend with a bad channel → 400', async () => {
    const created = await k.create({ to: magicNumber('0000'), purpose: 'login' });
    assertProblem(await k.request('POST', `/v1/verifications/${String(created.body.id)}/resend`, { body: { channel: 'fax' } }), 400, 'validation_failed');
  });

  test('health, readiness and metrics answer without credentials', async () => {
    assert.equal((await k.request('GET', '/healthz', { tenant: null })).status, 200);
    assert.equal((await k.request('GET', '/readyz', { tenant: null })).status, 200);
    const metrics = await k.request('GET', '/metrics', { tenant: null });
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /kurir_verifications_created_total/);
  });
});
