import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DELIVERY_RANK,
  DELIVERY_STATUSES,
  effectiveStatus,
  nextChannel,
  VERIFICATION_STATUSES,
} from '../../common/domain/verification.js';
import { decodeVerification, externalIdFor, parseExternalId } from '../../common/store/verification.store.js';

const EXPIRES = 1_700_000_300_000;

describe('effectiveStatus', () => {
  test('a pending verification is pending until its expiry', () => {
    assert.equal(effectiveStatus({ status: 'pending', expiresAt: EXPIRES }, EXPIRES - 1), 'pending');
  });

  test('a pending verification at or past its expiry is expired', () => {
    assert.equal(effectiveStatus({ status: 'pending', expiresAt: EXPIRES }, EXPIRES), 'expired');
    assert.equal(effectiveStatus({ status: 'pending', expiresAt: EXPIRES }, EXPIRES + 60_000), 'expired');
  });

  test('a finished verification keeps its status after the expiry', () => {
    for (const status of VERIFICATION_STATUSES.filter((s) => s !== 'pending')) {
      assert.equal(effectiveStatus({ status, expiresAt: EXPIRES }, EXPIRES + 1), status);
    }
  });
});

describe('nextChannel', () => {
  test('moves to the next channel of the plan', () => {
    assert.equal(nextChannel(['whatsapp', 'sms'], 'whatsapp'), 'sms');
    assert.equal(nextChannel(['whatsapp', 'sms', 'email'], 'sms'), 'email');
  });

  test('is undefined at the end of the plan', () => {
    assert.equal(nextChannel(['whatsapp', 'sms'], 'sms'), undefined);
    assert.equal(nextChannel(['sms'], 'sms'), undefined);
  });

  test('from a channel outside the plan, moves to the first other channel of the plan', () => {
    assert.equal(nextChannel(['sms'], 'whatsapp'), 'sms');
    assert.equal(nextChannel(['whatsapp', 'sms'], 'email'), 'whatsapp');
    assert.equal(nextChannel([], 'sms'), undefined);
  });
});

describe('DELIVERY_RANK', () => {
  test('failed < delivered < read', () => {
    assert.ok(DELIVERY_RANK.failed < DELIVERY_RANK.delivered);
    assert.ok(DELIVERY_RANK.delivered < DELIVERY_RANK.read);
  });

  test('queued is the lowest rank and read the highest', () => {
    const ranks = DELIVERY_STATUSES.map((status) => DELIVERY_RANK[status]);
    assert.equal(DELIVERY_RANK.queued, Math.min(...ranks));
    assert.equal(DELIVERY_RANK.read, Math.max(...ranks));
  });

  test('ranks are distinct and follow the order of DELIVERY_STATUSES', () => {
    assert.deepEqual(Object.keys(DELIVERY_RANK).sort(), [...DELIVERY_STATUSES].sort());
    for (let i = 1; i < DELIVERY_STATUSES.length; i += 1) {
      const lower = DELIVERY_STATUSES[i - 1];
      const higher = DELIVERY_STATUSES[i];
      assert.ok(lower !== undefined && higher !== undefined);
      assert.ok(DELIVERY_RANK[lower] < DELIVERY_RANK[higher], `${lower} < ${higher}`);
    }
  });

  test('provider statuses outrank our own sending states', () => {
    for (const ours of ['queued', 'retrying', 'sending'] as const) {
      for (const theirs of ['accepted', 'sent', 'failed', 'delivered', 'read'] as const) {
        assert.ok(DELIVERY_RANK[ours] < DELIVERY_RANK[theirs], `${ours} < ${theirs}`);
      }
    }
  });
});

describe('externalIdFor / parseExternalId', () => {
  const ID = 'ver_0123456789abcdef01234567';

  test('round-trips every delivery number 1–999', () => {
    for (let n = 1; n <= 999; n += 1) assert.deepEqual(parseExternalId(externalIdFor(ID, n)), { id: ID, delivery: n });
  });

  test('round-trips ids of 10 and 40 characters after ver_', () => {
    for (const id of [`ver_${'a'.repeat(10)}`, `ver_${'Z9'.repeat(20)}`]) {
      assert.deepEqual(parseExternalId(externalIdFor(id, 2)), { id, delivery: 2 });
    }
  });

  const junk: [string, string][] = [
    ['too-short id', 'ver_x-1'],
    ['delivery 0', 'ver_abcdefghijk-0'],
    ['no prefix', 'foo'],
    ['4-digit delivery', 'ver_abcdefghijk-1000'],
    ['leading zero', 'ver_abcdefghijk-01'],
    ['negative delivery', 'ver_abcdefghijk--1'],
    ['no delivery', 'ver_abcdefghijk'],
    ['empty delivery', 'ver_abcdefghijk-'],
    ['41-character id', `ver_${'a'.repeat(41)}-1`],
    ['punctuation in id', 'ver_abcdef.hijk-1'],
    ['other prefix', 'vex_abcdefghijk-1'],
    ['upper-case prefix', 'VER_abcdefghijk-1'],
    ['trailing newline', 'ver_abcdefghijk-1\n'],
    ['leading space', ' ver_abcdefghijk-1'],
    ['empty', ''],
  ];
  for (const [name, value] of junk) {
    test(`refuses ${name} (${JSON.stringify(value)})`, () => {
      assert.equal(parseExternalId(value), undefined);
    });
  }
});

describe('decodeVerification', () => {
  const hash: Record<string, string> = {
    id: 'ver_0123456789abcdef01234567',
    tenant: 'acme',
    to: '+6281234567890',
    kind: 'phone',
    country: 'ID',
    purpose: 'login',
    locale: 'id',
    plan: 'whatsapp,sms',
    status: 'pending',
    attempts: '1',
    maxAttempts: '5',
    codeLength: '6',
    timeout: '30',
    codeMac: 'mac',
    codeSealed: 'sealed',
    createdAt: '1700000000000',
    expiresAt: '1700000300000',
    lastSendAt: '1700000030000',
    fingerprint: 'fp',
    sends: '2',
    'd1:ch': 'whatsapp',
    'd1:st': 'delivered',
    'd1:why': 'initial',
    'd1:q': '1700000000000',
    'd1:pv': 'ycloud',
    'd1:pid': 'wamid.1',
    'd1:sent': '1700000001000',
    'd1:dlv': '1700000040000',
    'd1:fb': '2',
    'd1:late': '1',
    'd2:ch': 'sms',
    'd2:st': 'failed',
    'd2:why': 'timeout',
    'd2:q': '1700000030000',
    'd2:err': 'SMS_UNDELIVERABLE',
    'd2:fail': '1700000035000',
    'd2:fb': '0',
  };

  test('rebuilds the verification and both deliveries', () => {
    assert.deepEqual(decodeVerification(hash), {
      id: 'ver_0123456789abcdef01234567',
      tenant: 'acme',
      to: '+6281234567890',
      kind: 'phone',
      country: 'ID',
      purpose: 'login',
      locale: 'id',
      plan: ['whatsapp', 'sms'],
      status: 'pending',
      attempts: 1,
      maxAttempts: 5,
      codeLength: 6,
      deliveryTimeoutSeconds: 30,
      createdAt: 1_700_000_000_000,
      expiresAt: 1_700_000_300_000,
      approvedAt: undefined,
      endedAt: undefined,
      lastSendAt: 1_700_000_030_000,
      deliveries: [
        {
          n: 1,
          channel: 'whatsapp',
          reason: 'initial',
          status: 'delivered',
          provider: 'ycloud',
          providerMessageId: 'wamid.1',
          errorCode: undefined,
          queuedAt: 1_700_000_000_000,
          sentAt: 1_700_000_001_000,
          deliveredAt: 1_700_000_040_000,
          failedAt: undefined,
          fellBackTo: 2,
          deliveredAfterFallback: true,
        },
        {
          n: 2,
          channel: 'sms',
          reason: 'timeout',
          status: 'failed',
          provider: undefined,
          providerMessageId: undefined,
          errorCode: 'SMS_UNDELIVERABLE',
          queuedAt: 1_700_000_030_000,
          sentAt: undefined,
          deliveredAt: undefined,
          failedAt: 1_700_000_035_000,
          // fb = 0 is the "plan exhausted" marker, not a delivery number.
          fellBackTo: undefined,
          deliveredAfterFallback: false,
        },
      ],
    });
  });

  test('the record never exposes the code material', () => {
    const decoded = decodeVerification(hash);
    assert.ok(decoded !== undefined);
    assert.ok(!('codeMac' in decoded) && !('codeSealed' in decoded) && !('fingerprint' in decoded));
  });

  test('an empty hash (missing key) is undefined', () => {
    assert.equal(decodeVerification({}), undefined);
  });

  test('an empty country is undefined, an unknown locale falls back to en, unknown plan channels are dropped', () => {
    const decoded = decodeVerification({ ...hash, country: '', locale: 'xx', plan: 'whatsapp,pigeon,sms' });
    assert.equal(decoded?.country, undefined);
    assert.equal(decoded?.locale, 'en');
    assert.deepEqual(decoded?.plan, ['whatsapp', 'sms']);
  });

  test('unknown statuses and reasons fall back to their safe defaults', () => {
    const decoded = decodeVerification({ ...hash, status: 'bogus', 'd1:st': 'bogus', 'd1:why': 'bogus' });
    assert.equal(decoded?.status, 'pending');
    assert.equal(decoded?.deliveries[0]?.status, 'queued');
    assert.equal(decoded?.deliveries[0]?.reason, 'initial');
  });

  test('only `sends` deliveries are read, and a delivery with an unknown channel is skipped', () => {
    assert.deepEqual(decodeVerification({ ...hash, sends: '1' })?.deliveries.map((d) => d.n), [1]);
    assert.deepEqual(decodeVerification({ ...hash, 'd1:ch': 'pigeon' })?.deliveries.map((d) => d.n), [2]);
  });

  test('approvedAt and endedAt are read when present', () => {
    const decoded = decodeVerification({ ...hash, status: 'approved', approvedAt: '1700000050000', endedAt: '1700000050000' });
    assert.equal(decoded?.status, 'approved');
    assert.equal(decoded?.approvedAt, 1_700_000_050_000);
    assert.equal(decoded?.endedAt, 1_700_000_050_000);
  });
});
