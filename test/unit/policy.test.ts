import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../common/config/env.js';
import {
  DEFAULT_POLICY,
  MAX_TTL_SECONDS,
  loadPolicy,
  parsePolicy,
  routeForCountry,
  tenantPolicy,
} from '../../common/config/policy.js';

/** Asserts `fn` throws a ConfigError whose message contains every fragment. */
function assertConfigError(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
    return true;
  });
}

describe('parsePolicy: defaults', () => {
  test('an empty, null or undefined document yields the defaults', () => {
    assert.deepEqual(parsePolicy({}), DEFAULT_POLICY);
    assert.deepEqual(parsePolicy(null), DEFAULT_POLICY);
    assert.deepEqual(parsePolicy(undefined), DEFAULT_POLICY);
  });

  test('purpose TTLs: login 300, payment and transaction 600, none above 900', () => {
    const { purposes } = parsePolicy({});
    assert.equal(purposes.login?.ttlSeconds, 300);
    assert.equal(purposes.payment?.ttlSeconds, 600);
    assert.equal(purposes.transaction?.ttlSeconds, 600);
    assert.equal(MAX_TTL_SECONDS, 900);
    for (const [name, purpose] of Object.entries(purposes)) assert.ok(purpose.ttlSeconds <= 900, name);
  });

  test('mutating a parsed policy does not leak into the defaults or the next parse', () => {
    const first = parsePolicy({});
    first.routing.whatsappFirstCountries.push('US');
    first.code.length = 9;
    const login = first.purposes.login;
    assert.ok(login !== undefined);
    login.ttlSeconds = 31;
    const second = parsePolicy({});
    assert.ok(!second.routing.whatsappFirstCountries.includes('US'));
    assert.equal(second.code.length, 6);
    assert.equal(second.purposes.login?.ttlSeconds, 300);
    assert.ok(!DEFAULT_POLICY.routing.whatsappFirstCountries.includes('US'));
  });
});

describe('parsePolicy: overrides', () => {
  test('an override changes only the key it names', () => {
    const policy = parsePolicy({ code: { length: 8 }, purposes: { login: { ttlSeconds: 120 } } });
    assert.deepEqual(policy.code, { length: 8, maxAttempts: 5 });
    assert.equal(policy.purposes.login?.ttlSeconds, 120);
    assert.equal(policy.purposes.payment?.ttlSeconds, 600);
    assert.equal(policy.brand, 'Kurir');
    assert.deepEqual(policy.routing, DEFAULT_POLICY.routing);
  });

  test('new record entries are added beside the defaults', () => {
    const policy = parsePolicy({ purposes: { checkout: { ttlSeconds: 240 } }, locales: { byCountry: { US: 'es' } } });
    assert.equal(policy.purposes.checkout?.ttlSeconds, 240);
    assert.equal(policy.purposes.login?.ttlSeconds, 300);
    assert.equal(policy.locales.byCountry.US, 'es');
    assert.equal(policy.locales.byCountry.ID, 'id');
  });

  test('arrays replace the default instead of merging', () => {
    const policy = parsePolicy({ routing: { whatsappFirstCountries: ['ID'], defaultPlan: ['sms', 'whatsapp'] } });
    assert.deepEqual(policy.routing.whatsappFirstCountries, ['ID']);
    assert.deepEqual(policy.routing.defaultPlan, ['sms', 'whatsapp']);
    assert.deepEqual(policy.routing.whatsappFirstPlan, ['whatsapp', 'sms']);
  });
});

describe('parsePolicy: invalid documents name the path', () => {
  test('ttlSeconds above 900', () => {
    assertConfigError(() => parsePolicy({ purposes: { login: { ttlSeconds: 1000 } } }), 'purposes.login.ttlSeconds');
  });

  test('ttlSeconds below 30 and non-integer', () => {
    assertConfigError(() => parsePolicy({ purposes: { login: { ttlSeconds: 10 } } }), 'purposes.login.ttlSeconds');
    assertConfigError(() => parsePolicy({ purposes: { login: { ttlSeconds: 60.5 } } }), 'purposes.login.ttlSeconds');
  });

  test('a tenant purpose above 900', () => {
    assertConfigError(
      () => parsePolicy({ tenants: { acme: { purposes: { login: { ttlSeconds: 901 } } } } }),
      'tenants.acme.purposes.login.ttlSeconds',
    );
  });

  test('unknown top-level key', () => {
    assertConfigError(() => parsePolicy({ bogus: 1 }), 'bogus');
  });

  test('unknown nested key', () => {
    assertConfigError(() => parsePolicy({ code: { lenght: 8 } }), 'code', 'lenght');
    assertConfigError(() => parsePolicy({ routing: { countries: { US: { plann: ['sms'] } } } }), 'routing.countries.US', 'plann');
  });

  test('plan with a duplicate channel', () => {
    assertConfigError(() => parsePolicy({ routing: { whatsappFirstPlan: ['sms', 'sms'] } }), 'routing.whatsappFirstPlan');
    assertConfigError(
      () => parsePolicy({ routing: { countries: { ID: { plan: ['whatsapp', 'whatsapp'] } } } }),
      'routing.countries.ID.plan',
    );
  });

  test('plan with email, an unknown channel or no channel', () => {
    assertConfigError(() => parsePolicy({ routing: { defaultPlan: ['sms', 'email'] } }), 'routing.defaultPlan');
    assertConfigError(() => parsePolicy({ routing: { defaultPlan: ['pigeon'] } }), 'routing.defaultPlan');
    assertConfigError(() => parsePolicy({ routing: { defaultPlan: [] } }), 'routing.defaultPlan');
  });

  test('lower-case country code, unknown locale, delivery timeout out of range', () => {
    assertConfigError(() => parsePolicy({ routing: { whatsappFirstCountries: ['id'] } }), 'routing.whatsappFirstCountries');
    assertConfigError(() => parsePolicy({ locales: { fallback: 'fr' } }), 'locales.fallback');
    assertConfigError(
      () => parsePolicy({ routing: { countries: { US: { deliveryTimeoutSeconds: 61 } } } }),
      'routing.countries.US.deliveryTimeoutSeconds',
    );
  });

  test('a section replaced by a scalar', () => {
    assertConfigError(() => parsePolicy({ code: null }), 'code');
    assertConfigError(() => parsePolicy({ routing: 'sms' }), 'routing');
  });

  test('a non-mapping document', () => {
    assertConfigError(() => parsePolicy(['sms']), 'mapping');
    assertConfigError(() => parsePolicy('brand: x'), 'mapping');
  });

  test('the source name prefixes the message', () => {
    assertConfigError(() => parsePolicy({ bogus: 1 }, 'policy.yaml'), 'policy.yaml');
  });

  test('a top-level __proto__ key is refused', () => {
    assertConfigError(() => parsePolicy(JSON.parse('{"__proto__": {"brand": "Evil"}}')), '__proto__');
    assert.equal(({} as Record<string, unknown>).brand, undefined);
  });

  test('__proto__ / constructor keys inside merged sections are refused', () => {
    assertConfigError(() => parsePolicy(JSON.parse('{"purposes": {"__proto__": {"ttlSeconds": 60}}}')), '__proto__');
    assertConfigError(() => parsePolicy(JSON.parse('{"tenants": {"__proto__": {"brand": "Evil"}}}')), '__proto__');
    assertConfigError(() => parsePolicy({ routing: { countries: { constructor: { plan: ['sms'] } } } }), 'constructor');
  });

  test(
    '__proto__ inside a section the defaults do not have is refused, too',
    () => {
      assertConfigError(
        () => parsePolicy(JSON.parse('{"tenants": {"acme": {"purposes": {"__proto__": {"ttlSeconds": 60}}}}}')),
        '__proto__',
      );
    },
  );
});

describe('loadPolicy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kurir-policy-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('without a file returns the defaults', () => {
    assert.deepEqual(loadPolicy(undefined), DEFAULT_POLICY);
  });

  test('reads a YAML file and merges it over the defaults', () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(
      file,
      ['brand: Acme', 'purposes:', '  login:', '    ttlSeconds: 180', 'routing:', '  whatsappFirstCountries: [ID, BR]', ''].join('\n'),
    );
    const policy = loadPolicy(file);
    assert.equal(policy.brand, 'Acme');
    assert.equal(policy.purposes.login?.ttlSeconds, 180);
    assert.equal(policy.purposes.payment?.ttlSeconds, 600);
    assert.deepEqual(policy.routing.whatsappFirstCountries, ['ID', 'BR']);
  });

  test('reads a JSON file', () => {
    const file = join(dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ code: { maxAttempts: 3 } }));
    assert.deepEqual(loadPolicy(file).code, { length: 6, maxAttempts: 3 });
  });

  test('an empty file means the defaults', () => {
    const file = join(dir, 'empty.yaml');
    writeFileSync(file, '');
    assert.deepEqual(loadPolicy(file), DEFAULT_POLICY);
  });

  test('an invalid value names the file and the path', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'purposes:\n  login:\n    ttlSeconds: 1000\n');
    assertConfigError(() => loadPolicy(file), 'KURIR_POLICY_FILE', file, 'purposes.login.ttlSeconds');
  });

  test('a YAML __proto__ key is refused', () => {
    const file = join(dir, 'proto.yaml');
    writeFileSync(file, '__proto__:\n  brand: Evil\n');
    assertConfigError(() => loadPolicy(file), '__proto__');
  });

  test('unparsable YAML is a ConfigError naming the file', () => {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'purposes: [unclosed\n');
    assertConfigError(() => loadPolicy(file), 'KURIR_POLICY_FILE', file, 'not valid YAML');
  });

  test('a missing file is a ConfigError naming the variable and the path', () => {
    const file = join(dir, 'does-not-exist.yaml');
    assertConfigError(() => loadPolicy(file), 'KURIR_POLICY_FILE', file);
  });
});

describe('routeForCountry', () => {
  const policy = parsePolicy({});

  test('ID: WhatsApp first, then SMS; Indonesian', () => {
    assert.deepEqual(routeForCountry(policy, 'ID', 30), { plan: ['whatsapp', 'sms'], locale: 'id', deliveryTimeoutSeconds: 30 });
  });

  test('US: SMS only; English', () => {
    assert.deepEqual(routeForCountry(policy, 'US', 30), { plan: ['sms'], locale: 'en', deliveryTimeoutSeconds: 30 });
  });

  test('BR and IN use their locales', () => {
    assert.equal(routeForCountry(policy, 'BR', 30).locale, 'pt-BR');
    assert.equal(routeForCountry(policy, 'IN', 30).locale, 'hi');
  });

  test('an unknown country uses the default plan and the fallback locale', () => {
    assert.deepEqual(routeForCountry(policy, undefined, 25), { plan: ['sms'], locale: 'en', deliveryTimeoutSeconds: 25 });
  });

  test('a country override replaces plan, timeout and locale', () => {
    const custom = parsePolicy({
      routing: { countries: { US: { plan: ['whatsapp', 'sms'], deliveryTimeoutSeconds: 20, locale: 'es' } } },
    });
    assert.deepEqual(routeForCountry(custom, 'US', 30), { plan: ['whatsapp', 'sms'], locale: 'es', deliveryTimeoutSeconds: 20 });
  });

  test('a partial country override keeps the rest', () => {
    const custom = parsePolicy({ routing: { countries: { ID: { deliveryTimeoutSeconds: 45 } } } });
    assert.deepEqual(routeForCountry(custom, 'ID', 30), { plan: ['whatsapp', 'sms'], locale: 'id', deliveryTimeoutSeconds: 45 });
  });

  test('the returned plan is a copy', () => {
    routeForCountry(policy, 'ID', 30).plan.push('email');
    assert.deepEqual(routeForCountry(policy, 'ID', 30).plan, ['whatsapp', 'sms']);
    assert.deepEqual(policy.routing.whatsappFirstPlan, ['whatsapp', 'sms']);
  });
});

describe('tenantPolicy', () => {
  const policy = parsePolicy({
    tenants: { acme: { brand: 'Acme', codeLength: 8, purposes: { login: { ttlSeconds: 120 }, checkout: { ttlSeconds: 240 } } } },
  });

  test('a tenant overrides brand, code length and purposes; the rest stays global', () => {
    const effective = tenantPolicy(policy, 'acme');
    assert.equal(effective.brand, 'Acme');
    assert.equal(effective.codeLength, 8);
    assert.equal(effective.maxAttempts, 5);
    assert.equal(effective.purposes.login?.ttlSeconds, 120);
    assert.equal(effective.purposes.checkout?.ttlSeconds, 240);
    assert.equal(effective.purposes.payment?.ttlSeconds, 600);
  });

  test('a tenant override does not change the global purposes', () => {
    tenantPolicy(policy, 'acme');
    assert.equal(policy.purposes.login?.ttlSeconds, 300);
    assert.equal(policy.purposes.checkout, undefined);
  });

  test('a tenant without overrides sees the global policy', () => {
    assert.deepEqual(tenantPolicy(policy, 'other'), {
      brand: 'Kurir',
      codeLength: 6,
      maxAttempts: 5,
      purposes: DEFAULT_POLICY.purposes,
      security: DEFAULT_POLICY.security,
    });
  });

  test('tenant security overrides merge key by key and are validated', () => {
    const withOverrides = parsePolicy({
      security: { limits: { tenant: { perSecond: 500 } } },
      tenants: { acme: { security: { limits: { destination: { per24Hours: 4 } }, refusals: 'silent' } } },
    });
    const acme = tenantPolicy(withOverrides, 'acme').security;
    assert.equal(acme.limits.destination.per24Hours, 4);
    assert.equal(acme.limits.destination.per10Minutes, 3);
    assert.equal(acme.limits.tenant.perSecond, 500);
    assert.equal(acme.refusals, 'silent');
    assert.equal(tenantPolicy(withOverrides, 'other').security.refusals, 'explicit');
    assertConfigError(
      () => parsePolicy({ tenants: { acme: { security: { lockout: { maxFailuresPer24Hours: 500 } } } } }),
      'tenants.acme.security.lockout.maxFailuresPer24Hours',
    );
  });

  test('tenant values are validated', () => {
    assertConfigError(() => parsePolicy({ tenants: { acme: { codeLength: 12 } } }), 'tenants.acme.codeLength');
    assertConfigError(() => parsePolicy({ tenants: { acme: { brand: '' } } }), 'tenants.acme.brand');
  });
});
