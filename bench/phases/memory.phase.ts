import { setTimeout as delay } from 'node:timers/promises';
import { closedLoop } from '../lib/closed-loop.js';
import type { BenchContext } from '../lib/context.js';
import { AUTH, StateTracker, createBody, neverDeliveredNumber, queuesIdle, startEmbedded } from '../lib/kurir.js';
import { classDelta, snapshotPrefix, type PrefixSnapshot } from '../lib/redis-memory.js';

/**
 * Redis memory of one in-flight verification in its fullest state: WhatsApp accepted and its
 * `sent` receipt applied, the delivery timeout armed, nothing delivered yet (`…1002` numbers,
 * 60 s timeout) — its record, its limit and guard entries, its delayed timeout and expiry jobs,
 * the provider-message index, and whatever finished jobs the queues keep of it. Every number is a
 * fresh prefix here (the simulator's `…1002` fixes the last 4 digits), so the per-prefix limit and
 * guard state is counted in full for each verification: an upper bound. BullMQ's event streams are
 * capped by length (not per verification) and reported apart.
 */
export interface MemoryResults {
  batches: {
    count: number;
    /** INFO used_memory delta per verification (the whole server: noisy when others use it). */
    usedMemoryPerVerification: number;
    /** Sum of MEMORY USAGE over the prefix, event streams excluded, per verification. */
    bytesPerVerification: number;
    eventStreamBytesPerVerification: number;
    byClass: Record<string, number>;
  }[];
  eventStreams: PrefixSnapshot['eventStreams'];
}

const TIMEOUT_SECONDS = 60;
/** The longest window under a minute among the send limits (`tenant`, `country`: per second). */
const PER_SECOND_WINDOW_MS = 1000;

export async function measureInflightMemory(ctx: BenchContext): Promise<MemoryResults> {
  const prefix = `${ctx.base}-mem`;
  const deployment = await startEmbedded(ctx.settings, prefix, { KURIR_DELIVERY_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS) }, 'memory');
  const results: MemoryResults = { batches: [], eventStreams: {} };
  const started = Date.now();
  try {
    for (let batch = 0; batch < ctx.mode.memoryBatches; batch += 1) {
      // The first batch's timers must not fire while a later batch is measured.
      if (batch > 0 && Date.now() - started > (TIMEOUT_SECONDS - 20) * 1000) {
        ctx.log(`  in-flight memory: batch ${batch + 1} skipped (the first batch's timers are about to fire)`);
        break;
      }
      await queuesIdle(ctx.redis, prefix, ['send-whatsapp', 'receipts'], 10_000);
      const before = await snapshotPrefix(ctx.redis, prefix, 0);
      const tracker = new StateTracker(ctx.redis, prefix, 'd1:st', new Set(['sent']));
      const ids: string[] = [];
      await closedLoop({
        url: deployment.apiUrl,
        connections: ctx.mode.connections,
        durationSeconds: 0,
        amount: ctx.mode.memoryBatchSize,
        method: 'POST',
        headers: { ...AUTH, 'content-type': 'application/json' },
        next: () => ({ path: '/v1/verifications', body: createBody(neverDeliveredNumber()) }),
        onResponse: (status, body) => {
          if (status !== 202) return;
          const id = (JSON.parse(body) as { id?: string }).id;
          if (id !== undefined) {
            ids.push(id);
            tracker.watch(id);
          }
        },
        expectStatus: 202,
      });
      await tracker.drained(30_000);
      tracker.stop();
      await queuesIdle(ctx.redis, prefix, ['send-whatsapp', 'receipts'], 10_000);
      // The per-second rate windows (tenant, country) expire a second after the batch's last create:
      // they measure the create rate, not what a verification holds while it waits for its timeout.
      await delay(PER_SECOND_WINDOW_MS + 100);
      const after = await snapshotPrefix(ctx.redis, prefix, 0);
      const events = (s: PrefixSnapshot) => s.classes['bullmq-events']?.bytes ?? 0;
      const n = Math.max(1, ids.length);
      results.batches.push({
        count: ids.length,
        usedMemoryPerVerification: Math.round((after.usedMemory - before.usedMemory) / n),
        bytesPerVerification: Math.round((after.bytes - events(after) - (before.bytes - events(before))) / n),
        eventStreamBytesPerVerification: Math.round((events(after) - events(before)) / n),
        byClass: classDelta(before, after, n),
      });
      results.eventStreams = after.eventStreams;
      ctx.log(`  in-flight memory batch ${batch + 1}: ${results.batches.at(-1)?.bytesPerVerification} B/verification (used_memory: ${results.batches.at(-1)?.usedMemoryPerVerification} B)`);
    }
    return results;
  } finally {
    // Stopped before the first batch's timers fire: they stay in Redis until the prefix is removed.
    await deployment.stop();
  }
}
