import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import {
  ProcessGroup,
  freePort,
  indonesianMobile,
  poll,
  requestJson,
  startHeldProvider,
  waitForHttp,
  type ExitStatus,
  type HeldProvider,
  type KurirProcess,
  type OutputLine,
} from '../helpers/processes.js';
import { TEST_REDIS_URL, deletePrefix, freshPrefix } from '../helpers/redis.js';

/**
 * Kurir as real OS processes, the way a newcomer (`npm start`) and an operator (one process per
 * role) run it: `node --import tsx <role>/main.ts` from the repository root, configured only
 * through the environment, observed only through stdout/stderr, HTTP and exit statuses.
 * Every child is SIGKILLed in `after` if a test left it running, and every prefix is removed.
 */

const group = new ProcessGroup();
const prefixes: string[] = [];
const heldProviders: HeldProvider[] = [];

after(async () => {
  await group.killAll();
  await Promise.allSettled(heldProviders.map((held) => held.close()));
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    // After the kill: nothing can write under these prefixes any more.
    for (const prefix of prefixes) await deletePrefix(redis, prefix);
  } finally {
    await redis.quit();
  }
});

function newPrefix(label: string): string {
  const prefix = freshPrefix(label);
  prefixes.push(prefix);
  return prefix;
}

/** The README's development tenant key, in effect when KURIR_API_KEYS is unset. */
const DEMO_KEY = 'kurir_demo_key_123456';
/** Generous for one tsx start-up (~1 s), and far below the test timeout. */
const START_TIMEOUT_MS = 15_000;
/** What an operator's supervisor (systemd, Docker's stop timeout) would grant. */
const STOP_TIMEOUT_MS = 10_000;

/** `[simulator] whatsapp → +62•••••••••00  code 123456  (delivered, ver_…-1)`, the line `npm start` prints per send. */
interface SimulatorLine {
  channel: string;
  maskedTo: string;
  code: string;
  outcome: string;
  externalId: string;
  at: number;
}

const SIMULATOR_LINE = /^\[simulator\] (\S+)\s+→ (\S+)  code (\d+)  \(([\w-]+), (\S+)\)$/;

function parseSimulatorLine(line: OutputLine): SimulatorLine | undefined {
  if (line.stream !== 'stdout') return undefined;
  const match = SIMULATOR_LINE.exec(line.text);
  if (match === null) return undefined;
  const [, channel = '', maskedTo = '', code = '', outcome = '', externalId = ''] = match;
  return { channel, maskedTo, code, outcome, externalId, at: line.at };
}

async function simulatorLineFor(kurir: KurirProcess, externalId: string, timeoutMs = 5000): Promise<SimulatorLine> {
  const line = await kurir.waitForLine((candidate) => parseSimulatorLine(candidate)?.externalId === externalId, {
    timeoutMs,
    what: `a [simulator] line for ${externalId}`,
  });
  const parsed = parseSimulatorLine(line);
  assert.ok(parsed);
  return parsed;
}

/** The code as a whole number inside a text (not as part of a longer run of digits such as a timestamp). */
function mentionsCode(text: string, code: string): boolean {
  return new RegExp(`(?<![0-9])${code}(?![0-9])`).test(text);
}

/** Graceful stop: the process must end by the re-raised signal (or exit 0), within the supervisor's patience. */
function assertStoppedGracefully(p: KurirProcess, status: ExitStatus): void {
  assert.ok(
    status.signal === 'SIGTERM' || (status.signal === null && status.code === 0),
    `${p.name} ended with code=${status.code} signal=${status.signal}, not by SIGTERM\n${p.transcript()}`,
  );
}

function isGracefulShutdownLog(record: Record<string, unknown>): boolean {
  return typeof record.msg === 'string' && record.msg.startsWith('shutting down gracefully');
}

async function createVerification(apiUrl: string, key: string, body: Record<string, unknown>, owner: () => string): Promise<string> {
  const reply = await requestJson('POST', `${apiUrl}/v1/verifications`, { key, body });
  assert.equal(reply.status, 202, `${reply.text}\n${owner()}`);
  assert.equal(typeof reply.body.id, 'string');
  return String(reply.body.id);
}

async function checkCode(apiUrl: string, key: string, id: string, code: string): Promise<Record<string, unknown>> {
  const reply = await requestJson('POST', `${apiUrl}/v1/verifications/${id}/check`, { key, body: { code } });
  assert.equal(reply.status, 200, reply.text);
  return reply.body;
}

describe('npm start: every role and the simulator in one process', () => {
  let kurir: KurirProcess;
  let apiUrl: string;
  const walkthroughNumber = '+6281234560000';
  const fallbackNumber = indonesianMobile('1001');
  const codes: string[] = [];

  before(async () => {
    const [port, simulatorPort] = await Promise.all([freePort(), freePort()]);
    apiUrl = `http://127.0.0.1:${port}`;
    // Deliberately no KURIR_API_KEYS / KURIR_SECRET: the README's development defaults apply.
    kurir = group.spawn('npm start (main.ts)', 'main.ts', {
      PORT: String(port),
      SIMULATOR_PORT: String(simulatorPort),
      KURIR_KEY_PREFIX: newPrefix('proc-all'),
      LOG_FORMAT: 'json',
      KURIR_DELIVERY_TIMEOUT_SECONDS: '2',
      SIMULATOR_RECEIPT_DELAY_MS: '20',
    });
    await waitForHttp(`${apiUrl}/readyz`, kurir, START_TIMEOUT_MS);
  });

  test('README walk-through: create, read the code from the console, check approves', async () => {
    const id = await createVerification(apiUrl, DEMO_KEY, { to: walkthroughNumber, purpose: 'login' }, () => kurir.transcript());
    const line = await simulatorLineFor(kurir, `${id}-1`);
    assert.equal(line.channel, 'whatsapp');
    assert.equal(line.outcome, 'delivered');
    assert.match(line.maskedTo, /^\+62•+00$/, 'country code and last two digits only');
    assert.match(line.code, /^\d{6}$/);
    codes.push(line.code);

    assert.deepEqual(await checkCode(apiUrl, DEMO_KEY, id, line.code), { id, status: 'approved', valid: true, attemptsRemaining: 4 });
  });

  test('WhatsApp failed (…1001): the same code goes out by SMS within 2 s', async () => {
    const id = await createVerification(apiUrl, DEMO_KEY, { to: fallbackNumber, purpose: 'login' }, () => kurir.transcript());
    const whatsapp = await simulatorLineFor(kurir, `${id}-1`);
    const sms = await simulatorLineFor(kurir, `${id}-2`, 3000);
    assert.equal(whatsapp.channel, 'whatsapp');
    assert.equal(whatsapp.outcome, 'failed_receipt');
    assert.equal(sms.channel, 'sms');
    assert.equal(sms.code, whatsapp.code, 'a fallback resends the same code');
    assert.ok(sms.at - whatsapp.at < 2000, `SMS line came ${sms.at - whatsapp.at} ms after the WhatsApp line`);
    assert.match(sms.maskedTo, /^\+62•+01$/);
    codes.push(sms.code);

    assert.equal((await checkCode(apiUrl, DEMO_KEY, id, sms.code)).status, 'approved');
  });

  test('the console shows masked numbers only, and no log record contains a code', () => {
    assert.equal(codes.length, 2, 'needs the codes of the two tests above');
    const output = kurir.lines.map((line) => line.text).join('\n');
    for (const number of [walkthroughNumber, fallbackNumber]) {
      assert.ok(!output.includes(number.slice(1)), `${number} appears unmasked\n${kurir.transcript()}`);
    }
    const records = kurir.jsonLogs();
    assert.ok(
      records.some((record) => record.msg === 'verification created'),
      `expected JSON log records (LOG_FORMAT=json)\n${kurir.transcript()}`,
    );
    for (const line of kurir.lines) {
      if (!line.text.startsWith('{')) continue;
      for (const code of codes) assert.ok(!mentionsCode(line.text, code), `a log record contains the code ${code}: ${line.text}`);
    }
  });

  test('SIGTERM stops it gracefully', async () => {
    assert.ok(kurir.signal('SIGTERM'), 'still running before the signal');
    const status = await kurir.waitForExit(STOP_TIMEOUT_MS);
    // Not asserted here: the "shutting down gracefully" record. pino writes stdout asynchronously
    // and the re-raised signal does not wait for the flush, so an idle process can lose it.
    assertStoppedGracefully(kurir, status);
  });
});

/** What `GET /_simulator/messages` returns per provider call. */
interface SimulatorRecord {
  channel: string;
  to: string;
  externalId?: string;
  code?: string;
  httpStatus: number;
  receivedAt: number;
}

async function simulatorRecords(simulatorUrl: string, to: string): Promise<SimulatorRecord[]> {
  const response = await fetch(`${simulatorUrl}/_simulator/messages?to=${encodeURIComponent(to)}`);
  const body: unknown = await response.json();
  assert.equal(response.status, 200);
  assert.ok(Array.isArray(body));
  return body as SimulatorRecord[];
}

describe('one process per role: simulator, api, worker, scheduler', () => {
  const tenantKey = `acme_${randomBytes(12).toString('hex')}`;
  let simulator: KurirProcess;
  let api: KurirProcess;
  let worker: KurirProcess;
  let scheduler: KurirProcess;
  let apiUrl: string;
  let simulatorUrl: string;
  const all = (): KurirProcess[] => [simulator, api, worker, scheduler];
  const transcripts = (): string => all().map((p) => p.transcript()).join('\n');
  const sentCodes: string[] = [];
  const numbers: string[] = [];
  const anyExited = (): string | undefined => {
    const gone = all().find((p) => !p.running);
    return gone === undefined ? undefined : `${gone.name} exited`;
  };

  async function recordFor(to: string, externalId: string, timeoutMs: number): Promise<SimulatorRecord> {
    return await poll(
      async () => (await simulatorRecords(simulatorUrl, to)).find((record) => record.externalId === externalId && record.httpStatus === 200),
      { timeoutMs, what: `the simulator to record ${externalId}`, describe: transcripts, giveUp: anyExited },
    );
  }

  async function deliveries(id: string): Promise<Record<string, unknown>[]> {
    const reply = await requestJson('GET', `${apiUrl}/v1/verifications/${id}`, { key: tenantKey });
    assert.equal(reply.status, 200, reply.text);
    const list = reply.body.deliveries;
    assert.ok(Array.isArray(list), reply.text);
    return list as Record<string, unknown>[];
  }

  before(async () => {
    const [apiPort, simulatorPort] = await Promise.all([freePort(), freePort()]);
    apiUrl = `http://127.0.0.1:${apiPort}`;
    simulatorUrl = `http://127.0.0.1:${simulatorPort}`;
    const shared = {
      KURIR_KEY_PREFIX: newPrefix('proc-roles'),
      YCLOUD_BASE_URL: `${simulatorUrl}/v2`,
      KURIR_API_KEYS: `acme=${tenantKey}`,
      KURIR_SECRET: randomBytes(20).toString('hex'),
      KURIR_DELIVERY_TIMEOUT_SECONDS: '1',
      LOG_FORMAT: 'json',
    };
    // All four start at once; each role only needs the others when work arrives.
    simulator = group.spawn('simulator', 'simulator/main.ts', {
      SIMULATOR_PORT: String(simulatorPort),
      SIMULATOR_WEBHOOK_URL: `${apiUrl}/v1/webhooks/ycloud`,
      SIMULATOR_RECEIPT_DELAY_MS: '20',
    });
    api = group.spawn('api', 'api/main.ts', { ...shared, PORT: String(apiPort) });
    worker = group.spawn('worker', 'worker/main.ts', shared);
    scheduler = group.spawn('scheduler', 'scheduler/main.ts', shared);
    await Promise.all([
      waitForHttp(`${simulatorUrl}/_simulator/healthz`, simulator, START_TIMEOUT_MS),
      waitForHttp(`${apiUrl}/readyz`, api, START_TIMEOUT_MS),
      worker.waitForLog((record) => record.msg === 'worker started', { timeoutMs: START_TIMEOUT_MS, what: 'worker started' }),
      scheduler.waitForLog((record) => record.msg === 'scheduler started', { timeoutMs: START_TIMEOUT_MS, what: 'scheduler started' }),
    ]);
  });

  test('WhatsApp delivered: the receipt reaches the api process, the code approves', async () => {
    const to = indonesianMobile('0000');
    numbers.push(to);
    const id = await createVerification(apiUrl, tenantKey, { to, purpose: 'login' }, transcripts);
    const whatsapp = await recordFor(to, `${id}-1`, 5000);
    assert.equal(whatsapp.channel, 'whatsapp');
    assert.match(whatsapp.code ?? '', /^\d{6}$/);
    sentCodes.push(whatsapp.code ?? '');
    // simulator → api (signed webhook) → receipts queue → worker → store.
    await poll(async () => ((await deliveries(id))[0]?.status === 'delivered' ? true : undefined), {
      timeoutMs: 5000,
      what: `${id} delivery 1 to be delivered`,
      describe: transcripts,
      giveUp: anyExited,
    });
    assert.deepEqual(await checkCode(apiUrl, tenantKey, id, whatsapp.code ?? ''), { id, status: 'approved', valid: true, attemptsRemaining: 4 });
  });

  test('never delivered (…1002): the scheduler process fires the timeout, a worker process sends the same code by SMS', async () => {
    const to = indonesianMobile('1002');
    numbers.push(to);
    const id = await createVerification(apiUrl, tenantKey, { to, purpose: 'payment' }, transcripts);
    const whatsapp = await recordFor(to, `${id}-1`, 5000);
    const sms = await recordFor(to, `${id}-2`, 5000);
    assert.equal(sms.channel, 'sms');
    const waited = sms.receivedAt - whatsapp.receivedAt;
    assert.ok(waited >= 900, `SMS went out ${waited} ms after WhatsApp, before the 1 s delivery timeout`);
    assert.equal(sms.code, whatsapp.code, 'a fallback resends the same code');
    sentCodes.push(sms.code ?? '');

    // Only the scheduler serves delivery-timeout jobs, and only the worker serves send-sms.
    const fallback = await scheduler.waitForLog((record) => record.msg === 'fallback started' && record.verificationId === id, {
      timeoutMs: 2000,
      what: `the scheduler's fallback for ${id}`,
    });
    assert.equal(fallback.reason, 'timeout');
    await worker.waitForLog((record) => record.msg === 'message handed to provider' && record.jobId === `send-${id}-2`, {
      timeoutMs: 2000,
      what: `the worker's SMS send for ${id}`,
    });
    const timeline = await deliveries(id);
    assert.equal(timeline[1]?.reason, 'timeout');
    assert.equal(timeline[0]?.fellBackTo, 2);

    assert.equal((await checkCode(apiUrl, tenantKey, id, sms.code ?? '')).status, 'approved');
  });

  test('the api, worker and scheduler output holds no full number and no code', () => {
    assert.equal(sentCodes.length, 2, 'needs the codes of the two tests above');
    for (const p of [api, worker, scheduler]) {
      assert.ok(p.jsonLogs().length > 0, `expected JSON log records\n${p.transcript()}`);
      for (const line of p.lines) {
        for (const number of numbers) assert.ok(!line.text.includes(number.slice(1)), `${p.name} printed ${number}: ${line.text}`);
        for (const code of sentCodes) assert.ok(!mentionsCode(line.text, code), `${p.name} printed the code ${code}: ${line.text}`);
      }
    }
  });

  test('SIGTERM stops every role gracefully within 10 s', async () => {
    for (const p of all()) assert.ok(p.signal('SIGTERM'), `${p.name} was still running before the signal\n${p.transcript()}`);
    const statuses = await Promise.all(all().map((p) => p.waitForExit(STOP_TIMEOUT_MS)));
    all().forEach((p, i) => {
      const status = statuses[i];
      assert.ok(status);
      assertStoppedGracefully(p, status);
    });
  });
});

describe('signals and configuration', () => {
  interface HeldSetup {
    kurir: KurirProcess;
    apiUrl: string;
    held: HeldProvider;
    key: string;
    /** A second API process on the same prefix, to read the state once `kurir` is gone. */
    observerUrl: string | undefined;
  }

  /**
   * `npm start` against a provider that holds every call open: the WhatsApp send stays in flight,
   * so a graceful close has something to wait for, for as long as the test wants.
   */
  async function startWithHeldProvider(label: string, options: { observer: boolean }): Promise<HeldSetup> {
    const held = await startHeldProvider();
    heldProviders.push(held);
    const [port, observerPort] = await Promise.all([freePort(), freePort()]);
    const key = `acme_${randomBytes(12).toString('hex')}`;
    const env = {
      KURIR_KEY_PREFIX: newPrefix('proc-sig'),
      KURIR_API_KEYS: `acme=${key}`,
      KURIR_SECRET: randomBytes(20).toString('hex'),
      KURIR_PROVIDER: 'ycloud',
      YCLOUD_BASE_URL: held.baseUrl,
      YCLOUD_API_KEY: 'held_provider_key',
      YCLOUD_WEBHOOK_SECRET: 'whsec_held_provider',
      YCLOUD_WHATSAPP_FROM: '+15550001000',
      YCLOUD_EMAIL_FROM: 'Kurir <otp@kurir.example>',
      // Longer than the test: only the test (or the second signal) ends the call.
      YCLOUD_TIMEOUT_MS: '60000',
      LOG_FORMAT: 'json',
    };
    const kurir = group.spawn(`main.ts (${label})`, 'main.ts', { ...env, PORT: String(port) });
    const observer = options.observer ? group.spawn(`api/main.ts (${label} observer)`, 'api/main.ts', { ...env, PORT: String(observerPort) }) : undefined;
    const apiUrl = `http://127.0.0.1:${port}`;
    const observerUrl = observer === undefined ? undefined : `http://127.0.0.1:${observerPort}`;
    await Promise.all([
      waitForHttp(`${apiUrl}/readyz`, kurir, START_TIMEOUT_MS),
      observer === undefined ? undefined : waitForHttp(`${observerUrl}/readyz`, observer, START_TIMEOUT_MS),
    ]);
    return { kurir, apiUrl, held, key, observerUrl };
  }

  async function sendInFlight(setup: HeldSetup) {
    const id = await createVerification(setup.apiUrl, setup.key, { to: indonesianMobile('0000'), purpose: 'login' }, () => setup.kurir.transcript());
    const call = await setup.held.nextRequest(5000);
    assert.equal(call.path, '/v2/whatsapp/messages/sendDirectly');
    return { id, call };
  }

  /** First SIGTERM; the record is awaited while the process is blocked on the held send, so it cannot be lost. */
  async function signalAndWaitForShutdownLog(kurir: KurirProcess): Promise<void> {
    assert.ok(kurir.signal('SIGTERM'));
    await kurir.waitForLog(isGracefulShutdownLog, { timeoutMs: 5000, what: 'the graceful-shutdown log record' });
  }

  test('first SIGTERM lets the in-flight send finish, then the process ends by the signal', async () => {
    const setup = await startWithHeldProvider('graceful', { observer: true });
    const { id, call } = await sendInFlight(setup);
    await signalAndWaitForShutdownLog(setup.kurir);
    assert.ok(setup.kurir.running, `exited while a send was in flight\n${setup.kurir.transcript()}`);

    call.respond(200, { id: 'held_msg_1', status: 'accepted' });
    const status = await setup.kurir.waitForExit(STOP_TIMEOUT_MS);
    assertStoppedGracefully(setup.kurir, status);
    // Killed mid-send, the delivery would still read `sending`; finished, it records the provider's answer.
    const reply = await requestJson('GET', `${setup.observerUrl}/v1/verifications/${id}`, { key: setup.key });
    assert.equal(reply.status, 200, reply.text);
    const deliveries = reply.body.deliveries;
    assert.ok(Array.isArray(deliveries), reply.text);
    assert.equal((deliveries[0] as Record<string, unknown> | undefined)?.status, 'accepted', reply.text);
  });

  test('a second SIGTERM during the graceful close forces exit code 1 at once', async () => {
    const setup = await startWithHeldProvider('forced', { observer: true });
    const { id } = await sendInFlight(setup);
    await signalAndWaitForShutdownLog(setup.kurir);
    // The send is held open for 60 s, so the graceful close cannot have finished yet.
    assert.ok(setup.kurir.running, `exited while a send was in flight\n${setup.kurir.transcript()}`);

    assert.ok(setup.kurir.signal('SIGTERM'));
    const status = await setup.kurir.waitForExit(3000);
    assert.deepEqual(status, { code: 1, signal: null }, setup.kurir.transcript());
    assert.ok(
      setup.kurir.jsonLogs().some((record) => record.msg === 'second signal: exiting now'),
      setup.kurir.transcript(),
    );
    // Cut short: the send never recorded an answer (BullMQ's stall check hands the job out again).
    const reply = await requestJson('GET', `${setup.observerUrl}/v1/verifications/${id}`, { key: setup.key });
    assert.equal(reply.status, 200, reply.text);
    const deliveries = reply.body.deliveries;
    assert.ok(Array.isArray(deliveries), reply.text);
    assert.equal((deliveries[0] as Record<string, unknown> | undefined)?.status, 'sending', reply.text);
  });

  test('a bad setting stops the process with EX_CONFIG (78) and one stderr line naming it', async () => {
    const cases: { script: string; env: Record<string, string>; names: string }[] = [
      { script: 'api/main.ts', env: { PORT: 'abc' }, names: 'PORT' },
      { script: 'worker/main.ts', env: { WORKER_QUEUES: 'send-fax' }, names: 'WORKER_QUEUES' },
      { script: 'scheduler/main.ts', env: { KURIR_SECRET: 'too-short' }, names: 'KURIR_SECRET' },
    ];
    const started = cases.map((c) => ({
      ...c,
      p: group.spawn(`${c.script} (${c.names})`, c.script, { ...c.env, KURIR_KEY_PREFIX: newPrefix('proc-cfg') }),
    }));
    for (const { p, names } of started) {
      const status = await p.waitForExit(START_TIMEOUT_MS);
      assert.deepEqual(status, { code: 78, signal: null }, p.transcript());
      const stderr = p.textOf('stderr').filter((line) => line !== '');
      assert.equal(stderr.length, 1, p.transcript());
      assert.match(stderr[0] ?? '', new RegExp(`^kurir: configuration error: ${names}\\b`));
    }
  });
});
