import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { QUEUES } from '../../common/jobs/catalogue.js';
import { signatureHeader } from '../../common/providers/ycloud/ycloud-signature.js';
import { sampleQueues } from '../../common/runtime/watchdog.js';
import { magicNumber, startKurir, type KurirHarness } from '../helpers/kurir.js';

/**
 * The dashboard and the alerts against a real Prometheus (issue 5, acceptance 2 and 3).
 *
 * The PromQL lives in two files only: the Grafana dashboard (observability/grafana/dashboards/
 * kurir.json, `panels[].targets[].expr`) and the alert rules (observability/prometheus/rules/
 * kurir-alerts.yml, `groups[].rules[].expr`). This file reads every expression from them,
 * runs a Kurir scenario that moves every metric they use, lets the Debian `prometheus` binary
 * scrape the API's /metrics (embedded mode: one registry holds every role's metrics), and
 * evaluates each expression through GET /api/v1/query. An alert's condition is checked operand
 * by operand (`A < 0.8 and on (channel) B >= 20` → A and B): each must return data.
 *
 * Counters only show an increase() between two scrapes, so the scenario runs twice: once
 * before Prometheus starts (every label set exists at its first scrape) and once while it
 * scrapes every second. Without `prometheus`/`promtool` on the PATH the live part is skipped
 * with a notice; .ci/run installs the Debian package.
 */

const ROOT = new URL('../../', import.meta.url);
const path = (relative: string): string => fileURLToPath(new URL(relative, ROOT));
const DASHBOARD_FILE = path('observability/grafana/dashboards/kurir.json');
const DATASOURCES_FILE = path('observability/grafana/provisioning/datasources/prometheus.yml');
const DASHBOARD_PROVIDERS_FILE = path('observability/grafana/provisioning/dashboards/kurir.yml');
const PROMETHEUS_CONFIG_FILE = path('observability/prometheus/prometheus.yml');
const RULES_FILE = path('observability/prometheus/rules/kurir-alerts.yml');
const RULE_TESTS_FILE = path('observability/prometheus/tests/kurir-alerts.test.yml');
const COMPOSE_FILE = path('docker-compose.yml');
const POLICY_FILE = path('test/fixtures/observability.policy.yaml');

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function record(value: unknown, what: string): Json {
  assert.ok(isRecord(value), `${what} must be an object`);
  return value;
}

function list(value: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(value), `${what} must be a list`);
  return value;
}

function text(value: unknown, what: string): string {
  assert.ok(typeof value === 'string' && value.trim() !== '', `${what} must be a non-empty string`);
  return value;
}

const readYaml = (file: string): unknown => parse(readFileSync(file, 'utf8'), { merge: true });

// ---------------------------------------------------------------------------------------------
// The expressions, from their two source files.

interface Panel {
  id: number;
  type: string;
  title: string;
  raw: Json;
}

interface Target {
  panel: Panel;
  refId: string;
  expr: string;
}

interface AlertRule {
  group: string;
  alert: string;
  expr: string;
  raw: Json;
}

const dashboard = record(JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')), 'kurir.json');

/** Every panel, rows' nested panels included (a collapsed row keeps its panels inside it). */
function panels(): Panel[] {
  const out: Panel[] = [];
  const walk = (items: unknown, where: string): void => {
    for (const [i, item] of list(items, where).entries()) {
      const raw = record(item, `${where}[${i}]`);
      out.push({ id: Number(raw['id']), type: String(raw['type']), title: String(raw['title']), raw });
      if (raw['panels'] !== undefined) walk(raw['panels'], `${where}[${i}].panels`);
    }
  };
  walk(dashboard['panels'], 'panels');
  return out;
}

function targets(): Target[] {
  return panels().flatMap((panel) =>
    panel.type === 'row'
      ? []
      : list(panel.raw['targets'], `panel ${panel.id}.targets`).map((item, i) => {
          const target = record(item, `panel ${panel.id}.targets[${i}]`);
          return { panel, refId: String(target['refId']), expr: text(target['expr'], `panel ${panel.id}.targets[${i}].expr`).trim() };
        }),
  );
}

function alertRules(): AlertRule[] {
  const groups = list(record(readYaml(RULES_FILE), 'rules file')['groups'], 'groups');
  return groups.flatMap((item) => {
    const group = record(item, 'group');
    return list(group['rules'], `group ${String(group['name'])}.rules`).map((ruleItem) => {
      const raw = record(ruleItem, 'rule');
      return { group: String(group['name']), alert: text(raw['alert'], 'alert'), expr: text(raw['expr'], 'expr').trim(), raw };
    });
  });
}

// A small PromQL reader, enough to take conditions apart: it only needs to know what is at the
// top level (outside (), [] and {} and string literals). Precedence makes this exact: the set
// operators (and, or, unless) bind looser than comparisons, which bind looser than arithmetic.

/** Positions of the top level of `expr`, with the character there. */
function* topLevel(expr: string): Generator<number> {
  let depth = 0;
  for (let i = 0; i < expr.length; i += 1) {
    const c = expr[i] ?? '';
    if (c === '"' || c === "'" || c === '`') {
      for (i += 1; i < expr.length && expr[i] !== c; i += 1) if (expr[i] === '\\' && c !== '`') i += 1;
      continue;
    }
    if (c === '(' || c === '[' || c === '{') depth += 1;
    else if (c === ')' || c === ']' || c === '}') depth -= 1;
    else if (depth === 0) yield i;
  }
}

function stripParens(expr: string): string {
  let e = expr.trim();
  for (;;) {
    if (!e.startsWith('(') || !e.endsWith(')')) return e;
    // The opening parenthesis must close at the very end, not in `(a) / (b)`.
    let depth = 0;
    let closesAt = -1;
    for (const i of topLevelWithParens(e)) {
      if (e[i] === '(') depth += 1;
      else if (e[i] === ')') depth -= 1;
      if (depth === 0) {
        closesAt = i;
        break;
      }
    }
    if (closesAt !== e.length - 1) return e;
    e = e.slice(1, -1).trim();
  }
}

/** Every position outside string literals (for parenthesis matching). */
function* topLevelWithParens(expr: string): Generator<number> {
  for (let i = 0; i < expr.length; i += 1) {
    const c = expr[i] ?? '';
    if (c === '"' || c === "'" || c === '`') {
      for (i += 1; i < expr.length && expr[i] !== c; i += 1) if (expr[i] === '\\' && c !== '`') i += 1;
      continue;
    }
    yield i;
  }
}

const WORD = /[A-Za-z0-9_:]/;

/** Splits at top-level `and`, `or`, `unless`. */
function splitSetOperators(expr: string): string[] {
  const parts: string[] = [];
  let start = 0;
  for (const i of topLevel(expr)) {
    if (i < start) continue;
    const match = /^(and|or|unless)(?![A-Za-z0-9_:])/.exec(expr.slice(i));
    if (match === null || WORD.test(expr[i - 1] ?? ' ')) continue;
    parts.push(expr.slice(start, i));
    start = i + (match[1]?.length ?? 0);
  }
  parts.push(expr.slice(start));
  return parts.map((part) => part.trim());
}

/** `on (a, b)`, `ignoring (...)`, `group_left (...)`, `bool` left over at the start of an operand. */
function stripModifiers(expr: string): string {
  let e = expr.trim();
  for (;;) {
    const next = e.replace(/^(?:(?:on|ignoring|group_left|group_right)\s*\([^)]*\)|group_left|group_right|bool)\s*/, '');
    if (next === e) return e;
    e = next;
  }
}

/** Index of the first top-level comparison operator and its length, if any. */
function comparison(expr: string): { at: number; length: number } | undefined {
  for (const i of topLevel(expr)) {
    const two = expr.slice(i, i + 2);
    if (two === '==' || two === '!=' || two === '>=' || two === '<=') return { at: i, length: 2 };
    const one = expr[i];
    if (one === '>' || one === '<') return { at: i, length: 1 };
  }
  return undefined;
}

/**
 * The data-carrying operands of a condition: `A < 0.8 and on (x) B >= 20` → [A, B];
 * `X > 0 or Y > 0` → [X, Y]; an expression without a comparison is its own operand.
 */
export function conditionOperands(expr: string): string[] {
  const e = stripParens(expr);
  const parts = splitSetOperators(e);
  if (parts.length > 1) return parts.flatMap((part) => conditionOperands(stripModifiers(part)));
  const cmp = comparison(e);
  if (cmp === undefined) return [e];
  return conditionOperands(e.slice(0, cmp.at));
}

function compact(expr: string): string {
  return expr.replace(/\s+/g, ' ').replace(/\( /g, '(').replace(/ \)/g, ')').trim();
}

// ---------------------------------------------------------------------------------------------
// Static checks: no Prometheus needed.

describe('observability files', () => {
  const datasources = list(record(readYaml(DATASOURCES_FILE), 'datasources file')['datasources'], 'datasources');
  const prometheusDatasource = record(datasources.find((item) => isRecord(item) && item['type'] === 'prometheus'), 'the Prometheus datasource');
  const datasourceUid = text(prometheusDatasource['uid'], 'datasource uid');

  test('the PromQL reader takes conditions apart the way PromQL precedence does', () => {
    assert.deepEqual(conditionOperands('(a / b) < 0.8 and on (channel) c >= 20'), ['a / b', 'c']);
    assert.deepEqual(conditionOperands('sum by (q) (increase(x[5m])) > 0\nor\nsum by (q) (y and on (job) (time() - z) < 300) > 0'), [
      'sum by (q) (increase(x[5m]))',
      'sum by (q) (y and on (job) (time() - z) < 300)',
    ]);
    assert.deepEqual(conditionOperands('up{job=~"kurir-.+"} == 0'), ['up{job=~"kurir-.+"}']);
    assert.deepEqual(conditionOperands('(a or 0 * b) / b'), ['(a or 0 * b) / b']);
    assert.deepEqual(conditionOperands('x{l="a or b > c"} > 1 unless y'), ['x{l="a or b > c"}', 'y']);
    assert.deepEqual(conditionOperands('sum(increase(x[10m])) > 10'), ['sum(increase(x[10m]))']);
    assert.deepEqual(conditionOperands('errors_total / requests_total'), ['errors_total / requests_total'], '"or" inside a name is no operator');
  });

  test('the dashboard is a Grafana provisioning dashboard whose queries all use the provisioned datasource', () => {
    assert.equal(text(dashboard['title'], 'title'), 'Kurir — OTP delivery');
    assert.match(text(dashboard['uid'], 'uid'), /^[A-Za-z0-9_-]{1,40}$/, 'uid: at most 40 characters, URL-safe');
    assert.ok(Number.isInteger(dashboard['schemaVersion']) && Number(dashboard['schemaVersion']) >= 36, 'schemaVersion of Grafana 9+');
    assert.ok(dashboard['id'] === null || dashboard['id'] === undefined, 'no database id in a provisioned file');
    assert.ok(isRecord(dashboard['time']) && isRecord(dashboard['templating']));

    const all = panels();
    assert.ok(all.length >= 20, `${all.length} panels`);
    const ids = all.map((panel) => panel.id);
    assert.ok(ids.every((id) => Number.isInteger(id) && id > 0), 'integer panel ids');
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const occupied = new Set<string>();
    for (const panel of all) {
      const where = `panel ${panel.id} (${panel.title})`;
      assert.ok(['row', 'timeseries', 'stat', 'bargauge', 'gauge', 'table', 'barchart', 'piechart', 'text'].includes(panel.type), `${where}: type ${panel.type}`);
      text(panel.raw['title'], `${where}.title`);
      const grid = record(panel.raw['gridPos'], `${where}.gridPos`);
      const [x, y, w, h] = ['x', 'y', 'w', 'h'].map((key) => grid[key]);
      assert.ok([x, y, w, h].every((n) => Number.isInteger(n)), `${where}: integer gridPos`);
      assert.ok(Number(x) >= 0 && Number(w) >= 1 && Number(x) + Number(w) <= 24 && Number(h) >= 1, `${where}: inside the 24-column grid`);
      for (let col = Number(x); col < Number(x) + Number(w); col += 1) {
        for (let row = Number(y); row < Number(y) + Number(h); row += 1) {
          assert.ok(!occupied.has(`${col},${row}`), `${where} overlaps another panel at ${col},${row}`);
          occupied.add(`${col},${row}`);
        }
      }
      if (panel.type === 'row') {
        assert.equal(panel.raw['targets'], undefined, `${where}: a row has no queries`);
        continue;
      }
      text(panel.raw['description'], `${where}.description`);
      assert.deepEqual(panel.raw['datasource'], { type: 'prometheus', uid: datasourceUid }, `${where}: the provisioned datasource`);
      const panelTargets = list(panel.raw['targets'], `${where}.targets`);
      assert.ok(panelTargets.length >= 1, `${where}: at least one query`);
      const refIds = panelTargets.map((item) => String(record(item, `${where} target`)['refId']));
      assert.equal(new Set(refIds).size, refIds.length, `${where}: unique refIds`);
      for (const item of panelTargets) {
        const target = record(item, `${where} target`);
        assert.deepEqual(target['datasource'], { type: 'prometheus', uid: datasourceUid }, `${where}: target datasource`);
        const expr = text(target['expr'], `${where}.expr`);
        // The test evaluates the text as it is: no Grafana variables ($__rate_interval, ${x}).
        assert.doesNotMatch(expr, /\$(?!\d)/, `${where}: no Grafana template variables in ${expr}`);
      }
    }
    // The walker sees every query of the file: what the live test evaluates is all there is.
    const exprKeys = (readFileSync(DASHBOARD_FILE, 'utf8').match(/"expr"\s*:/g) ?? []).length;
    assert.equal(targets().length, exprKeys);

    // The panels the issue asks for.
    const titles = all.map((panel) => panel.title.toLowerCase());
    for (const wanted of ['delivery rate by channel', 'by country', 'fallbacks by reason', 'send → delivered latency', 'time to verify', 'conversion funnel', 'cost per approved verification', 'queue depth', 'refusals by rule', 'webhook failures']) {
      assert.ok(titles.some((title) => title.includes(wanted)), `a panel about "${wanted}"`);
    }
  });

  test('Grafana provisioning: the datasource the dashboard names, and a file provider on the mounted folder', () => {
    assert.equal(prometheusDatasource['url'], 'http://prometheus:9090', 'the compose service');
    assert.equal(prometheusDatasource['access'], 'proxy');
    const providers = list(record(readYaml(DASHBOARD_PROVIDERS_FILE), 'dashboard providers')['providers'], 'providers');
    const provider = record(providers[0], 'provider');
    assert.equal(provider['type'], 'file');
    const providerPath = text(record(provider['options'], 'provider.options')['path'], 'provider path');

    const compose = record(readYaml(COMPOSE_FILE), 'compose');
    const services = record(compose['services'], 'services');
    const grafanaVolumes = list(record(services['grafana'], 'grafana')['volumes'], 'grafana.volumes').map(String);
    assert.ok(grafanaVolumes.includes(`./observability/grafana/dashboards:${providerPath}:ro`), 'the provider reads the mounted dashboards');
    assert.ok(grafanaVolumes.includes('./observability/grafana/provisioning:/etc/grafana/provisioning:ro'));
    const grafanaEnv = record(record(services['grafana'], 'grafana')['environment'], 'grafana.environment');
    assert.equal(grafanaEnv['GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH'], `${providerPath}/kurir.json`, 'Grafana opens on the Kurir dashboard');
  });

  test('prometheus.yml scrapes the compose services on the ports they serve metrics on, and loads the mounted rules', () => {
    const config = record(readYaml(PROMETHEUS_CONFIG_FILE), 'prometheus.yml');
    const compose = record(readYaml(COMPOSE_FILE), 'compose');
    const services = record(compose['services'], 'services');
    const env = (service: string): Json => record(record(services[service], service)['environment'], `${service}.environment`);
    const jobs = new Map(list(config['scrape_configs'], 'scrape_configs').map((item) => {
      const job = record(item, 'scrape config');
      return [String(job['job_name']), job] as const;
    }));
    const staticTargets = (name: string): string[] =>
      list(record(jobs.get(name), name)['static_configs'], `${name}.static_configs`).flatMap((item) => list(record(item, 'static config')['targets'], 'targets').map(String));

    assert.deepEqual(staticTargets('kurir-api'), [`api:${String(env('api')['PORT'])}`]);
    assert.equal(record(jobs.get('kurir-api'), 'kurir-api')['metrics_path'], '/metrics');
    assert.deepEqual(staticTargets('kurir-scheduler'), [`scheduler:${String(env('scheduler')['METRICS_PORT'])}`]);
    const workerDns = record(list(record(jobs.get('kurir-worker'), 'kurir-worker')['dns_sd_configs'], 'dns_sd_configs')[0], 'dns sd');
    assert.deepEqual(workerDns['names'], ['worker'], 'every worker replica, through the service name');
    assert.equal(String(workerDns['port']), String(env('worker')['METRICS_PORT']));

    const promVolumes = list(record(services['prometheus'], 'prometheus')['volumes'], 'prometheus.volumes').map(String);
    assert.ok(promVolumes.includes('./observability/prometheus:/etc/prometheus:ro'));
    assert.deepEqual(config['rule_files'], ['/etc/prometheus/rules/*.yml'], 'rules/ of the mounted folder');
  });

  test('every alert has a severity, a summary and a description, and a condition with operands to evaluate', () => {
    const rules = alertRules();
    const names = rules.map((rule) => rule.alert);
    assert.equal(new Set(names).size, names.length, 'unique alert names');
    for (const wanted of ['KurirDeliveryRateLow', 'KurirFallbackSpike', 'KurirConversionCollapse', 'KurirQueueBacklog', 'KurirQueueStalled', 'KurirWebhookSignatureFailures', 'KurirPumpingQuarantine']) {
      assert.ok(names.includes(wanted), `alert ${wanted}`);
    }
    for (const rule of rules) {
      const labels = record(rule.raw['labels'], `${rule.alert}.labels`);
      assert.ok(['critical', 'warning'].includes(String(labels['severity'])), `${rule.alert}: severity`);
      const annotations = record(rule.raw['annotations'], `${rule.alert}.annotations`);
      text(annotations['summary'], `${rule.alert}.summary`);
      text(annotations['description'], `${rule.alert}.description`);
      assert.ok(comparison(stripParens(splitSetOperators(stripParens(rule.expr))[0] ?? '')) !== undefined, `${rule.alert}: the condition has a threshold`);
    }
    assert.match(rules.find((rule) => rule.alert === 'KurirWebhookSignatureFailures')?.expr ?? '', /kurir_webhook_events_total\{type="unverified"\}/);
  });
});

// ---------------------------------------------------------------------------------------------
// A real Prometheus.

function which(command: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

const PROMETHEUS = which('prometheus');
const PROMTOOL = which('promtool');
const MISSING = [PROMETHEUS === undefined ? 'prometheus' : '', PROMTOOL === undefined ? 'promtool' : ''].filter((name) => name !== '');
const SKIP = MISSING.length === 0 ? false : `${MISSING.join(' and ')} not installed: apt-get install prometheus (.ci/run does)`;
if (SKIP !== false) process.stderr.write(`\n*** test/e2e/prometheus.test.ts: live Prometheus checks SKIPPED (${SKIP}) ***\n\n`);

function promtool(args: string[], input?: string): { status: number | null; output: string } {
  const run = spawnSync(PROMTOOL ?? 'promtool', args, { encoding: 'utf8', input, timeout: 30_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

describe('a real Prometheus scraping a running Kurir', { skip: SKIP, timeout: 90_000 }, () => {
  let k: KurirHarness;
  let receiver: Server;
  let receiverUrl = '';
  let prometheus: ChildProcess | undefined;
  let prometheusLog = '';
  let base = '';
  let workdir = '';
  let metricsText = '';
  const timings: Record<string, number> = {};

  async function query(expr: string): Promise<{ status: string; error?: string; data?: { resultType: string; result: Sample[] } }> {
    const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await response.json()) as { status: string; error?: string; data?: { resultType: string; result: Sample[] } };
  }

  async function vector(expr: string): Promise<Sample[]> {
    const answer = await query(expr);
    assert.equal(answer.status, 'success', `${expr}: ${answer.error ?? ''}`);
    assert.equal(answer.data?.resultType, 'vector', expr);
    return answer.data?.result ?? [];
  }

  async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe().catch(() => undefined);
      if (value !== undefined) return value;
      if (prometheus?.exitCode !== null && prometheus?.exitCode !== undefined) throw new Error(`prometheus exited: ${prometheusLog}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; prometheus log:\n${prometheusLog.slice(-2000)}`);
      await sleep(200);
    }
  }

  /** Samples of the API target Prometheus has stored so far. */
  async function scrapes(): Promise<number> {
    const [sample] = await vector('count_over_time(up{job="kurir-api"}[10m])');
    return sample === undefined ? 0 : Number(sample.value[1]);
  }

  // --- the scenario: every metric the dashboard and the alerts use moves ---------------------

  async function createFor(to: string, extra: Record<string, unknown> = {}): Promise<string> {
    const reply = await k.create({ to, purpose: 'login', ...extra });
    assert.equal(reply.status, 202, reply.text);
    return String(reply.body['id']);
  }

  async function approve(id: string, code: string | undefined): Promise<void> {
    const reply = await k.request('POST', `/v1/verifications/${id}/check`, { body: { code } });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.body['status'], 'approved', reply.text);
  }

  /** WhatsApp delivered and approved, with a tenant callback (delivered, approved). */
  async function whatsappDelivered(): Promise<void> {
    const to = magicNumber('0000');
    const id = await createFor(to, { callbackUrl: receiverUrl, purpose: 'signup' });
    const message = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    await k.waitFor(id, (v) => v.deliveries[0]?.status === 'delivered');
    await approve(id, message.code);
  }

  /** 1001: failed receipt → SMS; 1002: no receipt → SMS after the 1 s timeout; both approved. */
  async function fallbackToSms(last4: '1001' | '1002'): Promise<void> {
    const to = magicNumber(last4);
    const id = await createFor(to);
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 5000);
    await k.waitFor(id, (v) => v.deliveries[1]?.status === 'delivered', 5000);
    await approve(id, sms.code);
  }

  /** 1006: the WhatsApp receipt arrives after the SMS went out (a double send). */
  async function lateReceipt(): Promise<void> {
    const to = magicNumber('1006');
    const id = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    await k.waitFor(id, (v) => v.deliveries[0]?.deliveredAfterFallback === true, 8000);
    await approve(id, whatsapp.code);
  }

  async function refusedFixedLine(): Promise<void> {
    const reply = await k.create({ to: '+442079460958', purpose: 'login' });
    assert.equal(reply.status, 403, reply.text);
    assert.equal(reply.body['rule'], 'number_type');
  }

  async function forgedWebhook(): Promise<void> {
    const body = JSON.stringify({ id: `evt_forged_${randomInt(1e9)}`, type: 'whatsapp.message.updated', whatsappMessage: {} });
    const reply = await k.request('POST', '/v1/webhooks/ycloud', {
      tenant: null,
      rawBody: body,
      headers: { 'Content-Type': 'application/json', 'YCloud-Signature': signatureHeader('whsec_someone_else', Math.floor(Date.now() / 1000), body) },
    });
    assert.equal(reply.status, 401, reply.text);
  }

  /**
   * SMS pumping in shadow mode (test/fixtures/observability.policy.yaml): ten unverified sends
   * to one number block, dated a minute back so the guard judges them now (see
   * test/e2e/security.test.ts, `aMinuteAgo`), then one more send records the quarantine.
   */
  async function pumpedBlock(): Promise<void> {
    const block = String(randomInt(10_000)).padStart(4, '0');
    const number = (i: number) => `+62813${block}${5000 + i}`;
    const services = k.kurir.services;
    const realNow = services.now;
    services.now = () => Date.now() - 61_000;
    try {
      for (let i = 0; i < 10; i += 1) await createFor(number(i), { channel: 'sms' });
    } finally {
      services.now = realNow;
    }
    await createFor(number(10), { channel: 'sms' });
    await createFor(number(11), { channel: 'sms' });
  }

  /**
   * The watchdog's sample, as the scheduler takes it every 15 s, with a short stall threshold:
   * this Kurir runs no send-email worker (WORKER_QUEUES), so the email job waits, unprocessed.
   */
  async function watchdogSample(): Promise<void> {
    const verdict = await sampleQueues(k.kurir.services, { queueNames: Object.values(QUEUES), stallAfterMs: 300, verdictTtlMs: 5000 });
    assert.ok(verdict.stalled.some((entry) => entry.queue === QUEUES.sendEmail), JSON.stringify(verdict));
  }

  async function scenario(round: number): Promise<void> {
    const started = Date.now();
    if (round === 1) await createFor(`obs.${Date.now()}@example.com`);
    await Promise.all([whatsappDelivered(), fallbackToSms('1001'), fallbackToSms('1002'), lateReceipt(), refusedFixedLine(), forgedWebhook()]);
    await pumpedBlock();
    await watchdogSample();
    timings[`scenario round ${round} (ms)`] = Date.now() - started;
  }

  before(async () => {
    const started = Date.now();
    receiver = createServer((request, response) => {
      request.resume();
      request.on('end', () => response.writeHead(204).end());
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/kurir-callbacks`;

    k = await startKurir({ KURIR_POLICY_FILE: POLICY_FILE, WORKER_QUEUES: 'send-whatsapp,send-sms,receipts,callbacks' });
    await scenario(1);

    // The scrape config Prometheus gets: the repository's kurir-api job, aimed at this Kurir.
    workdir = mkdtempSync(join(tmpdir(), 'kurir-prometheus-'));
    const repoConfig = record(readYaml(PROMETHEUS_CONFIG_FILE), 'prometheus.yml');
    const apiJob = record(list(repoConfig['scrape_configs'], 'scrape_configs').find((item) => isRecord(item) && item['job_name'] === 'kurir-api'), 'kurir-api job');
    const apiPort = new URL(k.url).port;
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: [RULES_FILE],
      scrape_configs: [{ ...apiJob, static_configs: [{ targets: [`127.0.0.1:${apiPort}`] }] }],
    };
    const configFile = join(workdir, 'prometheus.yml');
    writeFileSync(configFile, JSON.stringify(config, null, 2)); // JSON is YAML
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const promStarted = Date.now();
    prometheus = spawn(PROMETHEUS ?? 'prometheus', [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(workdir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    prometheus.stdout?.on('data', (chunk: Buffer) => (prometheusLog += chunk.toString('utf8')));
    prometheus.stderr?.on('data', (chunk: Buffer) => (prometheusLog += chunk.toString('utf8')));
    await until('Prometheus to be ready', async () => ((await fetch(`${base}/-/ready`)).ok ? true : undefined));
    await until('two scrapes', async () => ((await scrapes()) >= 2 ? true : undefined));
    timings['prometheus ready + 2 scrapes (ms)'] = Date.now() - promStarted;

    await scenario(2);
    // Two more scrapes after the last counter moved, then one rule evaluation on top.
    const seen = await scrapes();
    await until('two scrapes after the scenario', async () => ((await scrapes()) >= seen + 2 ? true : undefined));
    metricsText = (await k.request('GET', '/metrics', { tenant: null })).text;
    timings['before() total (ms)'] = Date.now() - started;
  });

  after(async () => {
    if (prometheus !== undefined && prometheus.exitCode === null) {
      const exited = new Promise<void>((resolve) => prometheus?.once('exit', () => resolve()));
      prometheus.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (prometheus.exitCode === null) prometheus.kill('SIGKILL');
    }
    await k?.close();
    await new Promise<void>((resolve) => (receiver === undefined ? resolve() : receiver.close(() => resolve())));
    if (workdir !== '') rmSync(workdir, { recursive: true, force: true });
  });

  test('promtool: the config and the rules check, and the rules pass their unit tests', (t) => {
    const version = promtool(['--version']);
    t.diagnostic(version.output.split('\n')[0] ?? '');
    const config = promtool(['check', 'config', '--syntax-only', PROMETHEUS_CONFIG_FILE]);
    assert.equal(config.status, 0, config.output);
    const rules = promtool(['check', 'rules', '--lint=all', '--lint-fatal', RULES_FILE]);
    assert.equal(rules.status, 0, rules.output);
    assert.match(rules.output, new RegExp(`SUCCESS: ${alertRules().length} rules found`));
    const unit = promtool(['test', 'rules', RULE_TESTS_FILE]);
    assert.equal(unit.status, 0, unit.output);
  });

  test('promtool check metrics accepts what /metrics serves', () => {
    assert.match(metricsText, /^kurir_fallbacks_total\{/m);
    // Strict: metrics.ts drops prom-client's three `_total` gauges (prometheus/client_js#283).
    const checked = promtool(['check', 'metrics'], metricsText);
    assert.equal(checked.status, 0, checked.output);
  });

  test('Prometheus loaded every rule and evaluates each without error', async () => {
    const rules = await until('every rule evaluated', async () => {
      const response = (await (await fetch(`${base}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
      const all = response.data.groups.flatMap((group) => group.rules);
      return all.length > 0 && all.every((rule) => rule.health !== 'unknown') ? all : undefined;
    });
    assert.deepEqual(rules.map((rule) => rule.name).sort(), alertRules().map((rule) => rule.alert).sort());
    for (const rule of rules) assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError ?? ''}`);
  });

  test('every dashboard query returns data', async (t) => {
    t.diagnostic(`timings: ${JSON.stringify(timings)}`);
    const all = targets();
    for (const target of all) {
      await t.test(`[${target.panel.title} ${target.refId}] ${compact(target.expr)}`, async () => {
        const result = await vector(target.expr);
        assert.ok(result.length > 0, `no data for ${target.expr}`);
        assert.ok(result.some((sample) => Number.isFinite(Number(sample.value[1]))), `only NaN/Inf: ${JSON.stringify(result)}`);
      });
    }
  });

  test('every operand of every alert condition returns data, and every full condition evaluates', async (t) => {
    for (const rule of alertRules()) {
      const full = await query(rule.expr);
      assert.equal(full.status, 'success', `${rule.alert}: ${full.error ?? ''}`);
      for (const operand of conditionOperands(rule.expr)) {
        await t.test(`[${rule.alert}] ${compact(operand)}`, async () => {
          const result = await vector(operand);
          assert.ok(result.length > 0, `no data for ${operand}`);
          assert.ok(result.some((sample) => Number.isFinite(Number(sample.value[1]))), `only NaN/Inf: ${JSON.stringify(result)}`);
        });
      }
    }
  });

  test('the numbers tell the scenario: fallback reasons, refusal rules, the forged webhook, the stalled queue, the cost', async () => {
    const find = (title: string): string => {
      const target = targets().find((candidate) => candidate.panel.title === title);
      assert.ok(target !== undefined, `panel ${title}`);
      return target.expr;
    };
    const labels = async (title: string, label: string): Promise<string[]> =>
      (await vector(find(title))).filter((s) => Number(s.value[1]) > 0).map((s) => s.metric[label] ?? '').sort();

    assert.deepEqual([...new Set(await labels('Fallbacks by reason', 'reason'))], ['failed', 'timeout']);
    const refusals = (await vector(find('Refusals by rule'))).map((s) => `${s.metric['rule']}/${s.metric['mode']}`);
    assert.ok(refusals.includes('number_type/enforce') && refusals.includes('pumping_guard/shadow'), refusals.join());
    assert.deepEqual(await labels('Webhook failures (last hour)', 'type'), ['unverified']);
    assert.deepEqual(await labels('Watchdog alarms', 'queue'), ['send-email']);
    assert.ok((await labels('Double sends (delivered after the fallback; re-sent in doubt)', 'channel')).includes('whatsapp'));
    assert.ok((await labels('Pumping quarantines (last hour)', 'dimension')).includes('prefix'));
    const rate = await vector(find('Delivery rate by channel'));
    for (const channel of ['whatsapp', 'sms']) {
      const value = Number(rate.find((s) => s.metric['channel'] === channel)?.value[1]);
      assert.ok(value > 0 && value <= 1.0001, `${channel} delivery rate ${value}`);
    }
    const cost = await vector(find('Cost per approved verification (last hour)'));
    assert.ok(cost.some((s) => s.metric['currency'] === 'USD' && Number(s.value[1]) > 0), JSON.stringify(cost));
  });

  test('the alerts the scenario should trip are firing: the stalled queue and the quarantine', async () => {
    const firing = await until('the alerts to fire', async () => {
      const response = (await (await fetch(`${base}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
      const names = response.data.alerts.filter((alert) => alert.state === 'firing').map((alert) => `${alert.labels['alertname']}/${alert.labels['queue'] ?? alert.labels['dimension'] ?? ''}`);
      return names.includes('KurirQueueStalled/send-email') && names.includes('KurirPumpingQuarantine/prefix') ? names : undefined;
    }, 10_000);
    // Small numbers stay below every ratio's minimum volume and the signature-failure threshold.
    for (const quiet of ['KurirDeliveryRateLow', 'KurirFallbackSpike', 'KurirConversionCollapse', 'KurirCountryConversionCollapse', 'KurirWebhookSignatureFailures', 'KurirTargetDown']) {
      assert.ok(!firing.some((name) => name.startsWith(`${quiet}/`)), `${quiet} fired: ${firing.join()}`);
    }
  });
});
