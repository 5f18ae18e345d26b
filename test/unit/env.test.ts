import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, QUEUE_ROLES, loadConfig } from '../../common/config/env.js';

type Env = Record<string, string>;

const SECRET = 'a'.repeat(64);
const KEY_A = 'key_a_0123456789abcdef';
const KEY_B = 'key_b_0123456789abcdef';
const YCLOUD: Env = {
  KURIR_PROVIDER: 'ycloud',
  YCLOUD_API_KEY: 'yc_live_key',
  YCLOUD_WEBHOOK_SECRET: 'whsec_live',
  YCLOUD_WHATSAPP_FROM: '+6281100001111',
  YCLOUD_EMAIL_FROM: 'Acme <otp@acme.example>',
};
/** Production's own settings; the provider settings come from YCLOUD (the simulator is refused there). */
const PRODUCTION_BASE: Env = { NODE_ENV: 'production', KURIR_SECRET: SECRET, KURIR_API_KEYS: `acme=${KEY_A}` };
/** The least a production process needs. */
const PRODUCTION: Env = { ...PRODUCTION_BASE, ...YCLOUD };

/** Asserts `loadConfig(env)` throws a ConfigError whose message contains every fragment. */
function assertConfigError(env: Env, ...fragments: string[]): void {
  assert.throws(
    () => loadConfig(env),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
      for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
      return true;
    },
  );
}

describe('loadConfig: development defaults', () => {
  test('an empty environment works in development and lists the defaults it used', () => {
    const config = loadConfig({});
    assert.equal(config.production, false);
    assert.ok(config.developmentDefaults.includes('KURIR_SECRET'));
    assert.ok(config.developmentDefaults.includes('KURIR_API_KEYS'));
    assert.ok(config.secret.length >= 32);
    assert.equal(config.apiKeys.size, 1);
    assert.equal(config.http.port, 3000);
    assert.equal(config.redis.url, 'redis://127.0.0.1:6379');
    assert.equal(config.provider.kind, 'simulator');
    assert.equal(config.delivery.timeoutSeconds, 30);
    assert.deepEqual(config.worker.queues, [...QUEUE_ROLES]);
  });

  test('explicit values are not reported as defaults', () => {
    const config = loadConfig({ KURIR_SECRET: SECRET, KURIR_API_KEYS: `acme=${KEY_A}` });
    assert.deepEqual(config.developmentDefaults, []);
    assert.equal(config.secret, SECRET);
    assert.equal(config.apiKeys.get('acme'), KEY_A);
  });

  test('blank values count as unset', () => {
    const config = loadConfig({ KURIR_SECRET: '   ', KURIR_API_KEYS: '' });
    assert.deepEqual([...config.developmentDefaults].sort(), ['KURIR_API_KEYS', 'KURIR_SECRET']);
  });
});

describe('loadConfig: production', () => {
  test('the simulator provider is refused in production (its webhook secret is public)', () => {
    assertConfigError({ ...PRODUCTION_BASE }, 'KURIR_PROVIDER', 'simulator');
  });

  test('a complete production environment loads', () => {
    const config = loadConfig(PRODUCTION);
    assert.equal(config.production, true);
    assert.deepEqual(config.developmentDefaults, []);
  });

  test('KURIR_SECRET is required in production', () => {
    const { KURIR_SECRET: _omitted, ...env } = PRODUCTION;
    assertConfigError(env, 'KURIR_SECRET', 'production');
  });

  test('KURIR_API_KEYS is required in production', () => {
    const { KURIR_API_KEYS: _omitted, ...env } = PRODUCTION;
    assertConfigError(env, 'KURIR_API_KEYS', 'production');
  });

  test('a secret shorter than 32 characters is refused, 32 is enough', () => {
    assertConfigError({ ...PRODUCTION, KURIR_SECRET: 'x'.repeat(31) }, 'KURIR_SECRET', '32');
    assertConfigError({ KURIR_SECRET: 'short' }, 'KURIR_SECRET');
    assert.equal(loadConfig({ ...PRODUCTION, KURIR_SECRET: 'x'.repeat(32) }).secret, 'x'.repeat(32));
  });

  test('KURIR_DELIVERY_TIMEOUT_SECONDS 10 is refused in production, 15 accepted', () => {
    assertConfigError({ ...PRODUCTION, KURIR_DELIVERY_TIMEOUT_SECONDS: '10' }, 'KURIR_DELIVERY_TIMEOUT_SECONDS');
    assert.equal(loadConfig({ ...PRODUCTION, KURIR_DELIVERY_TIMEOUT_SECONDS: '15' }).delivery.timeoutSeconds, 15);
  });

  test('KURIR_DELIVERY_TIMEOUT_SECONDS 10 is accepted in development', () => {
    assert.equal(loadConfig({ KURIR_DELIVERY_TIMEOUT_SECONDS: '10' }).delivery.timeoutSeconds, 10);
  });

  test('KURIR_DELIVERY_TIMEOUT_SECONDS outside 1–60 is refused everywhere', () => {
    assertConfigError({ KURIR_DELIVERY_TIMEOUT_SECONDS: '0' }, 'KURIR_DELIVERY_TIMEOUT_SECONDS');
    assertConfigError({ KURIR_DELIVERY_TIMEOUT_SECONDS: '61' }, 'KURIR_DELIVERY_TIMEOUT_SECONDS');
  });
});

describe('loadConfig: KURIR_API_KEYS', () => {
  test('parses tenant=key pairs, trimming spaces and skipping empty entries', () => {
    const config = loadConfig({ KURIR_API_KEYS: ` a=${KEY_A} , b = ${KEY_B},` });
    assert.deepEqual([...config.apiKeys], [['a', KEY_A], ['b', KEY_B]]);
  });

  test('a key may contain "="', () => {
    assert.equal(loadConfig({ KURIR_API_KEYS: `a=${KEY_A}==` }).apiKeys.get('a'), `${KEY_A}==`);
  });

  test('a tenant listed twice is refused', () => {
    assertConfigError({ KURIR_API_KEYS: `a=${KEY_A},a=${KEY_B}` }, 'KURIR_API_KEYS', '"a"', 'twice');
  });

  test('a key shorter than 16 characters is refused, naming the tenant', () => {
    assertConfigError({ KURIR_API_KEYS: `a=${KEY_A},b=${'k'.repeat(15)}` }, 'KURIR_API_KEYS', '"b"', '16');
    assert.equal(loadConfig({ KURIR_API_KEYS: `b=${'k'.repeat(16)}` }).apiKeys.get('b'), 'k'.repeat(16));
  });

  test('bad tenant names are refused', () => {
    for (const entry of [`Acme=${KEY_A}`, `=${KEY_A}`, KEY_A, `ac me=${KEY_A}`, `-acme=${KEY_A}`, `${'a'.repeat(41)}=${KEY_A}`]) {
      assertConfigError({ KURIR_API_KEYS: entry }, 'KURIR_API_KEYS');
    }
  });

  test('two tenants sharing one key is refused', () => {
    assertConfigError({ KURIR_API_KEYS: `a=${KEY_A},b=${KEY_A}` }, 'KURIR_API_KEYS', 'share');
  });

  test('a list without any pair is refused', () => {
    assertConfigError({ KURIR_API_KEYS: ', ,' }, 'KURIR_API_KEYS');
  });
});

describe('loadConfig: provider', () => {
  test('the simulator provider needs nothing and points at the local simulator', () => {
    const config = loadConfig({ SIMULATOR_PORT: '4999' });
    assert.equal(config.provider.kind, 'simulator');
    assert.equal(config.provider.baseUrl, 'http://127.0.0.1:4999/v2');
  });

  test('a complete ycloud configuration loads with the public base URL', () => {
    const config = loadConfig({ ...PRODUCTION, ...YCLOUD });
    assert.equal(config.provider.kind, 'ycloud');
    assert.equal(config.provider.baseUrl, 'https://api.ycloud.com/v2');
    assert.equal(config.provider.apiKey, 'yc_live_key');
    assert.equal(config.provider.smsSenderId, undefined);
  });

  for (const name of ['YCLOUD_API_KEY', 'YCLOUD_WEBHOOK_SECRET', 'YCLOUD_WHATSAPP_FROM', 'YCLOUD_EMAIL_FROM']) {
    test(`KURIR_PROVIDER=ycloud without ${name} names it (production and development)`, () => {
      const { [name]: _omitted, ...rest } = YCLOUD;
      assertConfigError({ ...PRODUCTION_BASE, ...rest }, `${name}: required`);
      assertConfigError(rest, `${name}: required`);
    });
  }

  test('an unknown provider is refused', () => {
    assertConfigError({ KURIR_PROVIDER: 'twilio' }, 'KURIR_PROVIDER');
  });

  test('YCLOUD_BASE_URL trailing slashes are trimmed', () => {
    assert.equal(loadConfig({ ...YCLOUD, YCLOUD_BASE_URL: 'https://api.ycloud.com/v2/' }).provider.baseUrl, 'https://api.ycloud.com/v2');
    assert.equal(loadConfig({ YCLOUD_BASE_URL: 'http://localhost:9000/v2///' }).provider.baseUrl, 'http://localhost:9000/v2');
  });

  test('YCLOUD_BASE_URL must be http(s)', () => {
    assertConfigError({ YCLOUD_BASE_URL: 'ftp://api.ycloud.com/v2' }, 'YCLOUD_BASE_URL');
    assertConfigError({ YCLOUD_BASE_URL: 'api.ycloud.com' }, 'YCLOUD_BASE_URL');
  });

  test('YCLOUD_WHATSAPP_FROM must be E.164', () => {
    assertConfigError({ ...YCLOUD, YCLOUD_WHATSAPP_FROM: '081100001111' }, 'YCLOUD_WHATSAPP_FROM');
  });
});

describe('loadConfig: WORKER_QUEUES', () => {
  test('parses a comma list, trimming and de-duplicating', () => {
    assert.deepEqual(loadConfig({ WORKER_QUEUES: ' send-sms , receipts,send-sms' }).worker.queues, ['send-sms', 'receipts']);
  });

  test('unset means every queue', () => {
    assert.deepEqual(loadConfig({}).worker.queues, ['send-whatsapp', 'send-sms', 'send-email', 'receipts', 'callbacks']);
  });

  test('an unknown queue is refused by name', () => {
    assertConfigError({ WORKER_QUEUES: 'send-sms,send-pigeon' }, 'WORKER_QUEUES', 'send-pigeon');
  });

  test('a list naming no queue is refused', () => {
    assertConfigError({ WORKER_QUEUES: ',,' }, 'WORKER_QUEUES');
  });
});

describe('loadConfig: numbers', () => {
  test('PORT parses', () => {
    assert.equal(loadConfig({ PORT: '8080' }).http.port, 8080);
    assert.equal(loadConfig({ PORT: '8080' }).http.publicUrl, 'http://127.0.0.1:8080');
  });

  test('an invalid PORT is refused by name', () => {
    for (const value of ['abc', '-1', '65536', '80.5', '8080x']) assertConfigError({ PORT: value }, 'PORT');
  });

  test(
    'an empty PORT counts as unset, like every other blank variable',
    () => {
      assert.equal(loadConfig({ PORT: '' }).http.port, 3000);
    },
  );

  test('KURIR_PUBLIC_URL trailing slash is trimmed and feeds the simulator webhook URL', () => {
    const config = loadConfig({ KURIR_PUBLIC_URL: 'https://otp.example/' });
    assert.equal(config.http.publicUrl, 'https://otp.example');
    assert.equal(config.simulator.webhookUrl, 'https://otp.example/v1/webhooks/ycloud');
  });

  test('KURIR_KEY_PREFIX refuses characters that would break Redis keys', () => {
    assertConfigError({ KURIR_KEY_PREFIX: 'kurir{x}' }, 'KURIR_KEY_PREFIX');
    assert.equal(loadConfig({ KURIR_KEY_PREFIX: 'kurir-staging' }).redis.keyPrefix, 'kurir-staging');
  });
});
