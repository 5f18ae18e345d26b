import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Ajv, type ValidateFunction } from 'ajv';
import formatsPlugin from 'ajv-formats';
import { parse } from 'yaml';
import { ConfigError, loadConfig } from '../../common/config/env.js';

/**
 * Checks the container files without a Docker engine: docker-compose.yml against the Compose
 * Specification schema plus the properties Kurir depends on, the Dockerfile and .dockerignore
 * as text.
 */

const ROOT = new URL('../../', import.meta.url);
const SPEC_URL = new URL('../../../shared/reference/compose-spec.json', import.meta.url);
const COMPOSE_TEXT = readFileSync(new URL('docker-compose.yml', ROOT), 'utf8');
const DOCKERFILE = readFileSync(new URL('Dockerfile', ROOT), 'utf8');

// Entry points the build emits (tsc mirrors source folders into dist/). The mains are being
// written in parallel, so this list stands in for existsSync until they land.
const ENTRY_SOURCES = ['api/main.ts', 'worker/main.ts', 'scheduler/main.ts', 'simulator/main.ts', 'main.ts'];
const KURIR_IMAGE = 'kurir:local';
const ROLES = ['api', 'worker', 'scheduler', 'simulator'] as const;
/** Where worker and scheduler serve /metrics; observability/prometheus/prometheus.yml scrapes it. */
const METRICS_PORT = '9464';

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function record(value: unknown, what: string): Json {
  assert.ok(isRecord(value), `${what} must be a mapping`);
  return value;
}

function stringArray(value: unknown, what: string): string[] {
  assert.ok(Array.isArray(value) && value.every((item) => typeof item === 'string'), `${what} must be a list of strings`);
  return value;
}

const compose = record(parse(COMPOSE_TEXT, { merge: true }), 'docker-compose.yml');
const services = record(compose['services'], 'services');

function service(name: string): Json {
  return record(services[name], `services.${name}`);
}

/** `dist/x/main.js` → `x/main.ts`; undefined for anything that is not a compiled entry point. */
function sourceOf(distPath: string): string | undefined {
  const match = /^dist\/((?:[a-z-]+\/)?main)\.js$/.exec(distPath);
  return match === null ? undefined : `${match[1]}.ts`;
}

function compileComposeSchema(): ValidateFunction {
  const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false });
  formatsPlugin.default(ajv);
  // compose-spec.json names its dialect "https://json-schema.org/draft-07/schema" (https, no
  // fragment); Ajv knows draft-07 under the http id, so register the same meta-schema under
  // the spelling the file uses instead of editing the reference file.
  const require = createRequire(import.meta.url);
  const draft07: unknown = JSON.parse(readFileSync(require.resolve('ajv/dist/refs/json-schema-draft-07.json'), 'utf8'));
  ajv.addMetaSchema({ ...record(draft07, 'draft-07 meta-schema'), $id: 'https://json-schema.org/draft-07/schema' });
  const spec: unknown = JSON.parse(readFileSync(SPEC_URL, 'utf8'));
  return ajv.compile(record(spec, 'compose-spec.json'));
}

test('docker-compose.yml is valid against the Compose Specification, and the validator can say no', (t) => {
  if (!existsSync(SPEC_URL)) {
    t.skip('compose-spec.json not found beside the checkout');
    return;
  }
  const validate = compileComposeSchema();
  assert.ok(validate(compose), JSON.stringify(validate.errors, null, 2));

  assert.equal(validate({ services: { x: { image: 5 } } }), false, 'a numeric image must be rejected');
  assert.equal(validate({ services: {}, bogus: true }), false, 'an unknown top-level key must be rejected');
  // Our own file with a typo'd key: the kind of mistake compose would reject at `up`.
  const broken = structuredClone(compose);
  record(record(broken['services'], 'services')['worker'], 'worker')['comand'] = ['node', 'dist/worker/main.js'];
  assert.equal(validate(broken), false, 'a misspelt service key must be rejected');
});

test('compose uses the Compose Specification format: no version key, services only from our list', () => {
  assert.ok(!('version' in compose), 'the obsolete `version:` key must not be set');
  assert.deepEqual(Object.keys(services).sort(), ['api', 'grafana', 'prometheus', 'redis', 'scheduler', 'simulator', 'worker']);
});

test('redis keeps data: AOF every second, noeviction, named volume, ping healthcheck', () => {
  const redis = service('redis');
  assert.match(String(redis['image']), /^redis:7(-alpine)?$/);
  const command = stringArray(redis['command'], 'redis.command');
  const flag = (name: string): string | undefined => command[command.indexOf(name) + 1];
  assert.ok(command.includes('--appendonly') && flag('--appendonly') === 'yes', 'appendonly yes');
  assert.equal(flag('--appendfsync'), 'everysec');
  assert.equal(flag('--maxmemory-policy'), 'noeviction');

  const volumes = stringArray(redis['volumes'], 'redis.volumes');
  const named = volumes.map((volume) => volume.split(':')[0] ?? '').find((source) => /^[a-z][a-z0-9_-]*$/.test(source));
  assert.ok(named !== undefined, 'redis data lives in a named volume');
  assert.ok(named in record(compose['volumes'], 'volumes'), `volume ${named} is declared at the top level`);
  assert.ok(volumes.some((volume) => volume.endsWith(':/data')), 'mounted on /data, where AOF files go');

  const healthcheck = stringArray(record(redis['healthcheck'], 'redis.healthcheck')['test'], 'redis.healthcheck.test');
  assert.deepEqual(healthcheck.slice(-2), ['redis-cli', 'ping']);
});

test('every Kurir role runs a compiled entry point, shares one environment and waits for healthy redis', () => {
  const sharedEnv = record(compose['x-kurir-env'], 'x-kurir-env');
  const expected: Record<(typeof ROLES)[number], string> = {
    api: 'dist/api/main.js',
    worker: 'dist/worker/main.js',
    scheduler: 'dist/scheduler/main.js',
    simulator: 'dist/simulator/main.js',
  };
  for (const role of ROLES) {
    const svc = service(role);
    assert.equal(svc['image'], KURIR_IMAGE, `${role} uses the Kurir image`);
    const command = stringArray(svc['command'], `${role}.command`);
    assert.deepEqual(command, ['node', expected[role]], `${role}.command`);
    const source = sourceOf(command[1] ?? '');
    assert.ok(source !== undefined && ENTRY_SOURCES.includes(source), `${role}: ${command[1]} maps to a known source`);

    // Roles without an HTTP port add the port their metrics are scraped on, nothing else.
    const own = role === 'worker' || role === 'scheduler' ? { METRICS_PORT } : {};
    assert.deepEqual(record(svc['environment'], `${role}.environment`), { ...sharedEnv, ...own }, `${role} uses x-kurir-env`);
    const redis = record(record(svc['depends_on'], `${role}.depends_on`)['redis'], `${role}.depends_on.redis`);
    assert.equal(redis['condition'], 'service_healthy', `${role} waits for a healthy redis`);
  }

  assert.equal(sharedEnv['REDIS_URL'], 'redis://redis:6379');
  assert.equal(sharedEnv['KURIR_PROVIDER'], 'simulator');
  assert.equal(sharedEnv['YCLOUD_BASE_URL'], 'http://simulator:4010/v2');
  assert.equal(sharedEnv['SIMULATOR_PORT'], '4010');
  assert.equal(sharedEnv['SIMULATOR_WEBHOOK_URL'], 'http://api:3000/v1/webhooks/ycloud');
  assert.equal(sharedEnv['NODE_ENV'], 'development', 'the compose file is a demo (see its header)');

  assert.ok(stringArray(service('api')['ports'], 'api.ports').includes('3000:3000'));
  assert.equal(record(service('worker')['deploy'], 'worker.deploy')['replicas'], 2);
});

test('monitoring: Prometheus with the observability config, Grafana provisioned, both on localhost', () => {
  const prometheus = service('prometheus');
  assert.match(String(prometheus['image']), /^prom\/prometheus:v2\.\d+\.\d+$/, 'a pinned Prometheus 2 image');
  const command = stringArray(prometheus['command'], 'prometheus.command');
  assert.ok(command.includes('--config.file=/etc/prometheus/prometheus.yml'));
  const promVolumes = stringArray(prometheus['volumes'], 'prometheus.volumes');
  assert.ok(promVolumes.includes('./observability/prometheus:/etc/prometheus:ro'));
  assert.ok(promVolumes.some((volume) => volume.endsWith(':/prometheus')), 'TSDB in a volume');
  assert.deepEqual(stringArray(prometheus['ports'], 'prometheus.ports'), ['127.0.0.1:9090:9090']);

  const grafana = service('grafana');
  assert.match(String(grafana['image']), /^grafana\/grafana:\d+\.\d+\.\d+$/, 'a pinned Grafana image');
  const grafanaVolumes = stringArray(grafana['volumes'], 'grafana.volumes');
  assert.ok(grafanaVolumes.includes('./observability/grafana/provisioning:/etc/grafana/provisioning:ro'));
  assert.ok(grafanaVolumes.includes('./observability/grafana/dashboards:/var/lib/grafana/dashboards:ro'));
  assert.deepEqual(stringArray(grafana['ports'], 'grafana.ports'), ['127.0.0.1:3001:3000']);
  const env = serviceEnv('grafana', {});
  assert.equal(env['GF_AUTH_ANONYMOUS_ORG_ROLE'], 'Viewer', 'anonymous visitors only view');
  assert.equal(env['GF_SECURITY_ADMIN_PASSWORD'], 'kurir-demo', 'a demo default…');
  assert.equal(serviceEnv('grafana', { GRAFANA_ADMIN_PASSWORD: 'from-env' })['GF_SECURITY_ADMIN_PASSWORD'], 'from-env', '…that .env overrides');

  // Every host path mounted by the monitoring services exists in the checkout.
  for (const volume of [...promVolumes, ...grafanaVolumes].filter((v) => v.startsWith('./'))) {
    assert.ok(existsSync(new URL(volume.split(':')[0] ?? '', ROOT)), `${volume}: source exists`);
  }
  const volumes = record(compose['volumes'], 'volumes');
  assert.ok('prometheus-data' in volumes && 'grafana-data' in volumes);
});

// Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error},
// ${VAR:+alt}, bare $VAR; `$$` is a literal dollar.
const INTERPOLATION = /\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g;

function strings(value: unknown, path: string, out: Array<[string, string]>): Array<[string, string]> {
  if (typeof value === 'string') out.push([path, value]);
  else if (Array.isArray(value)) value.forEach((item, i) => strings(item, `${path}[${i}]`, out));
  else if (isRecord(value)) for (const [key, item] of Object.entries(value)) strings(item, `${path}.${key}`, out);
  return out;
}

/** Resolves interpolation the way compose does for the forms we use, given the host environment. */
function interpolate(text: string, env: Readonly<Record<string, string>>): string {
  return text.replace(INTERPOLATION, (whole, name: string | undefined, op: string | undefined, arg: string | undefined) => {
    if (whole === '$$') return '$';
    assert.ok(name !== undefined && op !== undefined, `un-defaulted interpolation ${whole}`);
    const value = env[name];
    const unset = op.startsWith(':') ? value === undefined || value === '' : value === undefined;
    if (op.endsWith('-')) return unset ? (arg ?? '') : (value ?? '');
    if (op.endsWith('?')) {
      assert.ok(!unset, `${name}: ${arg ?? ''}`);
      return value ?? '';
    }
    return unset ? '' : (arg ?? '');
  });
}

test('every ${VAR} in compose has a default or a required-variable message', () => {
  const found: string[] = [];
  for (const [path, text] of strings(compose, '', [])) {
    for (const match of text.matchAll(INTERPOLATION)) {
      if (match[0] === '$$') continue;
      const [whole, name, op, arg] = match;
      assert.ok(name !== undefined, `${path}: write \${NAME:-default}, not bare ${whole}`);
      assert.ok(op !== undefined && op !== ':+' && op !== '+', `${path}: ${whole} has no default`);
      if (op.endsWith('?')) assert.ok((arg ?? '').trim() !== '', `${path}: ${whole} needs a message saying what to set`);
      found.push(name);
    }
  }
  // The variables a deployment must set are interpolated (so .env or the shell can supply them)
  // and named in the header comment.
  for (const name of ['KURIR_SECRET', 'KURIR_API_KEYS']) {
    assert.ok(found.includes(name), `${name} is interpolated`);
    assert.ok(COMPOSE_TEXT.split('\nname:')[0]?.includes(name), `${name} is documented in the header`);
  }
});

function serviceEnv(role: string, host: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(record(service(role)['environment'], `${role}.environment`))) {
    assert.ok(['string', 'number', 'boolean'].includes(typeof value), `${role}.environment.${key} is a scalar`);
    env[key] = interpolate(String(value), host);
  }
  return env;
}

test('a newcomer\'s `docker compose up` yields a config the service accepts; production refuses the gaps', () => {
  for (const role of ROLES) {
    const config = loadConfig(serviceEnv(role, {}));
    assert.equal(config.production, false, role);
    assert.equal(config.redis.url, 'redis://redis:6379');
    assert.equal(config.provider.kind, 'simulator');
    assert.equal(config.provider.baseUrl, 'http://simulator:4010/v2');
    assert.equal(config.simulator.webhookUrl, 'http://api:3000/v1/webhooks/ycloud');
    assert.ok(config.apiKeys.size > 0, `${role} has API keys`);
  }
  // Values from the host environment (or .env) win over the empty defaults.
  const secret = 'f'.repeat(64);
  const config = loadConfig(serviceEnv('api', { KURIR_SECRET: secret, KURIR_API_KEYS: 'shop=shop_key_0123456789' }));
  assert.equal(config.secret, secret);
  assert.deepEqual([...config.apiKeys.keys()], ['shop']);
  // The defaults in the file carry no secret: flipping to production without setting one fails.
  assert.throws(() => loadConfig({ ...serviceEnv('api', {}), NODE_ENV: 'production' }), ConfigError);
});

/** Dockerfile instructions of the final stage, with `\` continuations joined and comments dropped. */
function dockerInstructions(text: string): Array<{ stage: number; op: string; args: string }> {
  const joined = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  let stage = -1;
  const out: Array<{ stage: number; op: string; args: string }> = [];
  for (const line of joined.split('\n')) {
    const match = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (match === null) continue;
    const op = (match[1] ?? '').toUpperCase();
    if (op === 'FROM') stage += 1;
    out.push({ stage, op, args: (match[2] ?? '').trim() });
  }
  return out;
}

test('Dockerfile: slim multi-stage build, npm ci, non-root runtime, node-based healthcheck', () => {
  const steps = dockerInstructions(DOCKERFILE);
  const froms = steps.filter((s) => s.op === 'FROM').map((s) => s.args);
  assert.deepEqual(froms, ['node:20-bookworm-slim AS build', 'node:20-bookworm-slim AS runtime']);

  const build = steps.filter((s) => s.stage === 0);
  const runtime = steps.filter((s) => s.stage === 1);
  const runs = (stage: typeof steps): string => stage.filter((s) => s.op === 'RUN').map((s) => s.args).join('\n');
  assert.match(runs(build), /\bnpm ci\b/);
  assert.match(runs(build), /\bnpm run build\b/);
  assert.match(runs(runtime), /\bnpm ci\b[^\n]*--omit=dev/);
  assert.ok(runtime.some((s) => s.op === 'COPY' && /--from=build\s+\S*dist\s/.test(`${s.args} `)), 'runtime copies dist/ from the build stage');
  assert.ok(runtime.some((s) => s.op === 'ENV' && /\bNODE_ENV=production\b/.test(s.args)));
  assert.ok(runtime.some((s) => s.op === 'EXPOSE' && s.args === '3000'));

  // The last USER of the final stage is what the container runs as, and it must come after
  // every RUN (so installs ran as root, the app does not).
  const users = runtime.filter((s) => s.op === 'USER');
  assert.equal(users.at(-1)?.args, 'node');
  const lastUser = runtime.lastIndexOf(users.at(-1) ?? runtime[0]!);
  assert.ok(runtime.findLastIndex((s) => s.op === 'RUN') < lastUser, 'USER node after the last RUN');

  const healthcheck = runtime.find((s) => s.op === 'HEALTHCHECK')?.args ?? '';
  assert.match(healthcheck, /CMD\s+\[\s*"node"/, 'probe runs node');
  assert.match(healthcheck, /fetch\(/);
  assert.match(healthcheck, /\/healthz/);
  const commands = steps.filter((s) => s.op === 'RUN' || s.op === 'HEALTHCHECK' || s.op === 'CMD').map((s) => s.args);
  assert.ok(!commands.some((args) => /\b(curl|wget)\b/.test(args)), 'slim images have neither curl nor wget');

  const cmd: unknown = JSON.parse(runtime.find((s) => s.op === 'CMD')?.args ?? 'null');
  assert.deepEqual(cmd, ['node', 'dist/main.js']);
  const source = sourceOf('dist/main.js');
  assert.ok(source !== undefined && ENTRY_SOURCES.includes(source));
});

test('.dockerignore keeps host artefacts and secrets out of the build context', () => {
  const entries = readFileSync(new URL('.dockerignore', ROOT), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  for (const entry of ['node_modules', 'dist', '.git', '.env']) {
    assert.ok(entries.includes(entry), `${entry} is ignored`);
  }
  // The build needs these; ignoring them would break `npm ci` or `npm run build`.
  for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'common', 'api']) {
    assert.ok(!entries.includes(needed), `${needed} must reach the build`);
  }
});
