import { closedLoop } from '../lib/closed-loop.js';
import type { BenchContext } from '../lib/context.js';
import { AUTH, StateTracker, createBody, neverDeliveredNumber, queuesIdle, startEmbedded } from '../lib/kurir.js';
import { classDelta, snapshotPrefix, type PrefixSnapshot } from '../lib/redis-memory.js';

/**
 * Redis memory of one in-flight verification in its fullest state: WhatsApp accepted and its
 * `sent` receipt applied, the delivery timeout armed, nothing delivered yet (`…1002` numbers,
 * 30 s timeout) — its record, its limit and guard entries, its completed send and receipt jobs,
 * its delayed timeout job, the provider-message index and the webhook dedupe key. BullMQ's event
 * streams are capped by BullMQ (not per verification) and reported apart.
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
