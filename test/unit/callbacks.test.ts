import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { createVerificationSchema } from '../../api/schemas.js';
import { CALLBACK_URL_MAX_LENGTH, checkCallbackUrl, isBlockedAddress } from '../../common/callbacks/callback-url.js';
import { callbackSignatureHeader, signCallback, verifyCallbackSignature } from '../../common/callbacks/callback-signature.js';
import { callbackEventSchema, jobIds } from '../../common/jobs/catalogue.js';
import { classifyCallbackStatus } from '../../worker/callback.handler.js';

const DEV = { production: false };
const PROD = { production: true };

function problem(raw: string, options: { production: boolean }): string | undefined {
  const checked = checkCallbackUrl(raw, options);
  return checked.ok ? undefined : checked.problem;
}

describe('callback URL validation', () => {
  test('https URLs pass in both modes and come back normalised', () => {
    for (const options of [DEV, PROD]) {
      assert.deepEqual(checkCallbackUrl('https://hooks.example.com/kurir?tenant=acme', options), { ok: true, url: 'https://hooks.example.com/kurir?tenant=acme' });
      assert.deepEqual(checkCallbackUrl('HTTPS://Hooks.Example.COM:443/a/../b', options), { ok: true, url: 'https://hooks.example.com/b' });
      assert.equal(problem('https://203.0.113.7:8443/hook', options), undefined);
      assert.equal(problem('https://[2001:db8::1]/hook', options), undefined);
    }
  });

  test('http is for development only', () => {
    assert.equal(problem('http://127.0.0.1:8080/hook', DEV), undefined);
    assert.equal(problem('http://hooks.example.com/', PROD), 'scheme');
    for (const raw of ['ftp://example.com/', 'file:///etc/passwd', 'javascript:alert(1)', 'data:text/plain,x']) {
      assert.equal(problem(raw, DEV), 'scheme', raw);
    }
  });

  test('credentials, fragments, relative and oversized URLs are refused in every mode', () => {
    for (const options of [DEV, PROD]) {
      assert.equal(problem('https://user:pass@example.com/', options), 'credentials');
      assert.equal(problem('https://user@example.com/', options), 'credentials');
      assert.equal(problem('https://example.com/hook#frag', options), 'fragment');
      assert.equal(problem('https://example.com/hook#', options), 'fragment', 'an empty fragment too (URL drops it)');
      assert.equal(problem('/relative/hook', options), 'malformed');
      assert.equal(problem('https://', options), 'malformed');
      assert.equal(problem('https://exa mple.com/', options), 'not_ascii');
      assert.equal(problem('https://bücher.example/', options), 'not_ascii');
      const long = `https://example.com/${'a'.repeat(CALLBACK_URL_MAX_LENGTH)}`;
      assert.equal(problem(long, options), 'too_long');
      assert.equal(problem(`https://example.com/${'a'.repeat(CALLBACK_URL_MAX_LENGTH - 'https://example.com/'.length)}`, options), undefined);
    }
  });

  test('production refuses loopback, private and link-local IP literals, however they are spelled', () => {
    const blocked = [
      'https://127.0.0.1/', 'https://127.1.2.3:8443/', 'https://0x7f.1/', 'https://2130706433/', 'https://%31%32%37.0.0.1/', 'https://127.0.0.1./',
      'https://10.0.0.5/', 'https://10.1/', 'https://172.16.0.1/', 'https://172.31.255.255/', 'https://192.168.1.1/',
      'https://169.254.169.254/latest/meta-data/', 'https://0.0.0.0/', 'https://0/', 'https://100.64.0.1/',
      'https://[::1]/', 'https://[0:0:0:0:0:0:0:1]/', 'https://[::]/', 'https://[fe80::1]/', 'https://[fd00::1]/', 'https://[fc00::1]/',
      'https://[::ffff:127.0.0.1]/', 'https://[::ffff:a9fe:a9fe]/', 'https://[::ffff:10.0.0.1]/', 'https://[64:ff9b::a00:1]/',
      'https://localhost/', 'https://LOCALHOST./', 'https://api.localhost/',
    ];
    for (const raw of blocked) {
      assert.equal(problem(raw, PROD), 'private_address', raw);
      assert.equal(problem(raw.replace('https:', 'http:'), DEV), undefined, `${raw} is fine in development`);
    }
    for (const raw of ['https://172.32.0.1/', 'https://192.169.0.1/', 'https://11.0.0.1/', 'https://[2001:4860::8888]/', 'https://[::ffff:8.8.8.8]/', 'https://localhost.example.com/']) {
      assert.equal(problem(raw, PROD), undefined, raw);
    }
  });

  test('isBlockedAddress looks at IP literals only, never at names', () => {
    assert.equal(isBlockedAddress('10.0.0.1'), true);
    assert.equal(isBlockedAddress('[::1]'), true);
    assert.equal(isBlockedAddress('internal.example.com'), false, 'names are the egress proxy\'s job');
    assert.equal(isBlockedAddress('8.8.8.8'), false);
  });

  test('the create schema applies the mode-independent rules; the API adds the production ones', () => {
    const body = (callbackUrl: unknown) => ({ to: '+6281234567890', purpose: 'login', callbackUrl });
    assert.equal(createVerificationSchema.safeParse(body('https://hooks.example.com/k')).success, true);
    assert.equal(createVerificationSchema.safeParse(body('http://127.0.0.1:9/k')).success, true);
    for (const bad of ['https://u:p@example.com/', 'https://example.com/#x', 'ftp://example.com/', '', 42, `https://x.com/${'a'.repeat(2100)}`]) {
      const parsed = createVerificationSchema.safeParse(body(bad));
      assert.equal(parsed.success, false, String(bad));
      assert.deepEqual([...new Set(parsed.error?.issues.map((issue) => issue.path.join('.')))], ['callbackUrl']);
    }
  });
});

describe('callback signatures', () => {
  const key = 'acme_test_key_0000000001';
  const body = '{"id":"evt_0123","type":"verification.approved"}';

  test('s is HMAC-SHA256(api key, "<t>.<raw body>") in lower-case hex', () => {
    const expected = createHmac('sha256', key).update(`1700000000.${body}`).digest('hex');
    assert.equal(signCallback(key, 1700000000, body), expected);
    assert.equal(callbackSignatureHeader(key, 1700000000, body), `t=1700000000,s=${expected}`);
    assert.equal(signCallback(key, 1700000000, Buffer.from(body)), expected, 'bytes and text sign the same');
  });

  test('the reference verifier accepts exactly the signed bytes, key and time window', () => {
    const header = callbackSignatureHeader(key, 1700000000, body);
    assert.deepEqual(verifyCallbackSignature({ header, rawBody: body, apiKey: key, nowSeconds: 1700000100 }), { ok: true, timestamp: 1700000000 });
    assert.deepEqual(verifyCallbackSignature({ header, rawBody: `${body} `, apiKey: key, nowSeconds: 1700000000 }), { ok: false, reason: 'mismatch' });
    assert.deepEqual(verifyCallbackSignature({ header, rawBody: body, apiKey: 'beta_test_key_0000000002', nowSeconds: 1700000000 }), { ok: false, reason: 'mismatch' });
    assert.deepEqual(verifyCallbackSignature({ header, rawBody: body, apiKey: key, nowSeconds: 1700000301 }), { ok: false, reason: 'stale' });
    assert.deepEqual(verifyCallbackSignature({ header, rawBody: body, apiKey: key, nowSeconds: 1699999699 }), { ok: false, reason: 'stale' });
    assert.deepEqual(verifyCallbackSignature({ header: undefined, rawBody: body, apiKey: key, nowSeconds: 1700000000 }), { ok: false, reason: 'missing' });
    assert.deepEqual(verifyCallbackSignature({ header: 's=abc,t=1', rawBody: body, apiKey: key, nowSeconds: 1 }), { ok: false, reason: 'malformed' });
  });
});

describe('callback delivery rules', () => {
  test('2xx done, 410 stop, 408/429/5xx retry, everything else (redirects too) permanent', () => {
    const cases: [number, ReturnType<typeof classifyCallbackStatus>][] = [
      [200, 'delivered'], [202, 'delivered'], [204, 'delivered'], [299, 'delivered'],
      [410, 'gone'],
      [408, 'retry'], [429, 'retry'], [500, 'retry'], [502, 'retry'], [503, 'retry'], [504, 'retry'],
      [301, 'permanent'], [302, 'permanent'], [307, 'permanent'], [308, 'permanent'],
      [400, 'permanent'], [401, 'permanent'], [403, 'permanent'], [404, 'permanent'], [405, 'permanent'], [413, 'permanent'], [422, 'permanent'],
    ];
    for (const [status, expected] of cases) assert.equal(classifyCallbackStatus(status), expected, String(status));
  });

  test('job ids name the event, so each is queued once', () => {
    assert.equal(jobIds.callback('ver_0123456789ab', 'verification.approved'), 'callback-ver_0123456789ab-approved');
    assert.equal(jobIds.callback('ver_0123456789ab', 'verification.fallback', 2), 'callback-ver_0123456789ab-fallback-2');
    assert.equal(jobIds.verificationExpiry('ver_0123456789ab'), 'expire-ver_0123456789ab');
    for (const id of [jobIds.callback('ver_0123456789ab', 'verification.failed', 3), jobIds.verificationExpiry('ver_0123456789ab')]) {
      assert.ok(!id.includes(':'), 'BullMQ refuses ":" in custom ids');
    }
  });

  test('the event schema is closed: no member (a code, say) can ride along', () => {
    const event = {
      id: 'evt_0123456789abcdef01234567',
      type: 'verification.approved',
      createdAt: '2024-01-01T00:00:00.000Z',
      verification: { id: 'ver_0123456789ab', status: 'approved', purpose: 'login', to: '+6281234567890', channel: 'sms', deliveries: 1 },
      data: { approvedAt: '2024-01-01T00:00:00.000Z' },
    };
    assert.equal(callbackEventSchema.safeParse(event).success, true);
    assert.deepEqual(Object.keys(callbackEventSchema.parse(event)), ['id', 'type', 'createdAt', 'verification', 'data']);
    assert.equal(callbackEventSchema.safeParse({ ...event, code: '123456' }).success, false);
    assert.equal(callbackEventSchema.safeParse({ ...event, data: { approvedAt: event.createdAt, code: '123456' } }).success, false);
    assert.equal(callbackEventSchema.safeParse({ ...event, verification: { ...event.verification, code: '123456' } }).success, false);
    assert.equal(callbackEventSchema.safeParse({ ...event, type: 'verification.canceled' }).success, false);
    assert.equal(callbackEventSchema.safeParse({ ...event, data: { expiresAt: event.createdAt } }).success, false, 'data is checked per type');
  });
});
