import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CHANNELS } from '../domain/channel.js';

/**
 * The process's Prometheus metrics. Label values come only from fixed sets (channel, provider,
 * ISO country, purpose, status, reason, configured tenant); never a number, an id or an IP, so
 * cardinality stays bounded whatever the traffic.
 */
export interface Metrics {
  registry: Registry;
  verificationsCreated: Counter<'tenant' | 'purpose' | 'channel' | 'country'>;
  verificationsEnded: Counter<'tenant' | 'purpose' | 'status' | 'country'>;
  checks: Counter<'tenant' | 'result'>;
  messagesSent: Counter<'channel' | 'provider' | 'result'>;
  receipts: Counter<'channel' | 'status'>;
  fallbacks: Counter<'from' | 'to' | 'reason'>;
  sendsInDoubt: Counter<'channel' | 'cause' | 'resolution'>;
  lateReceipts: Counter<'channel'>;
  webhookEvents: Counter<'type' | 'result'>;
  jobsSkipped: Counter<'queue' | 'reason'>;
  guardRefusals: Counter<'tenant' | 'rule' | 'mode'>;
  quarantines: Counter<'tenant' | 'dimension' | 'mode'>;
  queueJobs: Gauge<'queue' | 'state'>;
  queueOldestReady: Gauge<'queue'>;
  watchdogAlarms: Counter<'queue'>;
  callbacks: Counter<'type' | 'result'>;
  providerCallDuration: Histogram<'provider' | 'channel' | 'result'>;
  deliveryLatency: Histogram<'channel' | 'country'>;
  timeToVerify: Histogram<'channel' | 'purpose'>;
  cost: Counter<'channel' | 'country' | 'currency'>;
  messagesBillable: Counter<'channel' | 'country'>;
}

/**
 * Latency buckets (seconds), shared with the per-minute histograms of `/v1/stats`
 * (common/stats), so the API's percentiles and Prometheus' agree on their resolution.
 */
export const DELIVERY_LATENCY_BUCKETS: readonly number[] = [0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120];
export const TIME_TO_VERIFY_BUCKETS: readonly number[] = [5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900];

const COUNTRY = /^[A-Z]{2}$/;

/** ISO country code as a label; anything else (email, unknown) becomes `ZZ`, the ISO "unknown". */
export function countryLabel(country: string | undefined): string {
  return country !== undefined && COUNTRY.test(country) ? country : 'ZZ';
}

/** Known webhook event types keep their name; anything else is one bucket. */
const KNOWN_EVENT_TYPES = new Set(['whatsapp.message.updated', 'sms.message.updated', 'email.delivery.updated']);
export function eventTypeLabel(type: string): string {
  return KNOWN_EVENT_TYPES.has(type) ? type : 'other';
}

export function createMetrics(options: { role: string; collectDefaults?: boolean }): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ role: options.role });
  if (options.collectDefaults !== false) {
    collectDefaultMetrics({ register: registry, prefix: 'kurir_process_' });
    // prom-client names these gauges `_total`, which `promtool check metrics` flags as counter
    // names on a gauge (prometheus/client_js#283); handles and requests are not worth a lint failure.
    for (const name of ['active_handles_total', 'active_requests_total', 'active_resources_total']) {
      registry.removeSingleMetric(`kurir_process_nodejs_${name}`);
    }
  }
  const registers = [registry];
  return {
    registry,
    verificationsCreated: new Counter({
      name: 'kurir_verifications_created_total',
      help: 'Verifications accepted by the API, by first channel.',
      labelNames: ['tenant', 'purpose', 'channel', 'country'],
      registers,
    }),
    verificationsEnded: new Counter({
      name: 'kurir_verifications_ended_total',
      help: 'Verifications that reached a final status (approved, canceled, expired, max_attempts).',
      labelNames: ['tenant', 'purpose', 'status', 'country'],
      registers,
    }),
    checks: new Counter({
      name: 'kurir_checks_total',
      help: 'Code checks by result (approved, wrong_code, max_attempts, expired, canceled, not_found).',
      labelNames: ['tenant', 'result'],
      registers,
    }),
    messagesSent: new Counter({
      name: 'kurir_messages_sent_total',
      help: 'Provider send calls by result (accepted, retry, failed, skipped).',
      labelNames: ['channel', 'provider', 'result'],
      registers,
    }),
    receipts: new Counter({
      name: 'kurir_receipts_total',
      help: 'Delivery receipts applied, by the status they moved the delivery to.',
      labelNames: ['channel', 'status'],
      registers,
    }),
    fallbacks: new Counter({
      name: 'kurir_fallbacks_total',
      help: 'Fallbacks started, by channel pair and reason (failed, timeout, rejected).',
      labelNames: ['from', 'to', 'reason'],
      registers,
    }),
    sendsInDoubt: inDoubtCounter(registers),
    lateReceipts: new Counter({
      name: 'kurir_late_receipts_total',
      help: 'Delivered/read receipts that arrived after the fallback went out (double sends).',
      labelNames: ['channel'],
      registers,
    }),
    webhookEvents: new Counter({
      name: 'kurir_webhook_events_total',
      help: 'Provider webhook requests by event type and result.',
      labelNames: ['type', 'result'],
      registers,
    }),
    jobsSkipped: new Counter({
      name: 'kurir_jobs_skipped_total',
      help: 'Jobs that had nothing left to do (stale verification, already sent, unknown message).',
      labelNames: ['queue', 'reason'],
      registers,
    }),
    guardRefusals: new Counter({
      name: 'kurir_guard_refusals_total',
      help: 'Sends refused before anything was queued, by rule; mode shadow counts what would have been refused.',
      labelNames: ['tenant', 'rule', 'mode'],
      registers,
    }),
    quarantines: new Counter({
      name: 'kurir_pumping_quarantines_total',
      help: 'Number prefixes or countries the pumping guard quarantined (or would have, in shadow mode).',
      labelNames: ['tenant', 'dimension', 'mode'],
      registers,
    }),
    queueJobs: new Gauge({
      name: 'kurir_queue_jobs',
      help: 'Jobs per queue and state, sampled by the scheduler.',
      labelNames: ['queue', 'state'],
      registers,
    }),
    queueOldestReady: new Gauge({
      name: 'kurir_queue_oldest_ready_seconds',
      help: 'Age of the oldest job that is ready to run but not picked up, per queue.',
      labelNames: ['queue'],
      registers,
    }),
    watchdogAlarms: new Counter({
      name: 'kurir_watchdog_alarms_total',
      help: 'Times the watchdog found jobs waiting with nothing processing them.',
      labelNames: ['queue'],
      registers,
    }),
    callbacks: new Counter({
      name: 'kurir_callbacks_total',
      help: 'Tenant callback attempts by event type and result (delivered, gone, rejected, retry, timeout, network, refused_url, unknown_tenant).',
      labelNames: ['type', 'result'],
      registers,
    }),
    providerCallDuration: new Histogram({
      name: 'kurir_provider_call_duration_seconds',
      help: 'Latency of provider API calls.',
      labelNames: ['provider', 'channel', 'result'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers,
    }),
    deliveryLatency: new Histogram({
      name: 'kurir_delivery_latency_seconds',
      help: 'From provider acceptance to the delivered receipt.',
      labelNames: ['channel', 'country'],
      buckets: [...DELIVERY_LATENCY_BUCKETS],
      registers,
    }),
    timeToVerify: new Histogram({
      name: 'kurir_time_to_verify_seconds',
      help: 'From creation to approval, by the channel of the latest delivery.',
      labelNames: ['channel', 'purpose'],
      buckets: [...TIME_TO_VERIFY_BUCKETS],
      registers,
    }),
    cost: new Counter({
      name: 'kurir_cost_total',
      help: 'Estimated provider cost from the policy price table: WhatsApp when delivered, SMS per segment and email when sent.',
      labelNames: ['channel', 'country', 'currency'],
      registers,
    }),
    messagesBillable: new Counter({
      name: 'kurir_messages_billable_total',
      help: 'Messages counted into kurir_cost_total (an SMS of several segments counts once here).',
      labelNames: ['channel', 'country'],
      registers,
    }),
  };
}

/**
 * Every series starts at 0: a possible duplicate (`resolution="resent"`) is rare, and an alert on
 * `increase()` would miss the first one if its series only appeared with it.
 */
function inDoubtCounter(registers: Registry[]): Counter<'channel' | 'cause' | 'resolution'> {
  const counter = new Counter({
    name: 'kurir_sends_in_doubt_total',
    help: 'Deliveries an earlier call may already have sent (cause worker_lost, provider_timeout), by how it was settled (found, absent, fell_back, resent).',
    labelNames: ['channel', 'cause', 'resolution'] as const,
    registers,
  });
  for (const channel of CHANNELS) {
    for (const cause of ['worker_lost', 'provider_timeout']) {
      for (const resolution of ['found', 'absent', 'fell_back', 'resent']) counter.inc({ channel, cause, resolution }, 0);
    }
  }
  return counter;
}
