/**
 * The pumping guard's approvals not yet written, merged into one count per bucket: the approvals
 * of one tenant (and window) become one script (pumping-guard.lua.ts, record_approvals) with a
 * triple per bucket — its counts key, the minute of the sends it answers, how many approvals.
 */
export interface ApprovalBatch {
  keys: string[];
  /** now, windowMs, then (key index from 1, minute, count) per bucket. */
  args: number[];
}

interface TenantApprovals {
  windowMs: number;
  /** The latest clock of its approvals: the window is judged from there. */
  now: number;
  /** `<counts key index>:<minute>` → approvals. */
  buckets: Map<string, number>;
  keys: string[];
  keyIndex: Map<string, number>;
}

export class PendingApprovals {
  private readonly byTenant = new Map<string, TenantApprovals>();

  /** One approval of a send recorded in `minute`, for each of the subjects' counts hashes. */
  add(tenant: string, windowMs: number, countsKeys: readonly string[], minute: number, now: number): void {
    const group = `${tenant}\0${windowMs}`;
    let pending = this.byTenant.get(group);
    if (pending === undefined) {
      pending = { windowMs, now, buckets: new Map(), keys: [], keyIndex: new Map() };
      this.byTenant.set(group, pending);
    }
    pending.now = Math.max(pending.now, now);
    for (const key of countsKeys) {
      let index = pending.keyIndex.get(key);
      if (index === undefined) {
        index = pending.keys.push(key);
        pending.keyIndex.set(key, index);
      }
      const bucket = `${index}:${minute}`;
      pending.buckets.set(bucket, (pending.buckets.get(bucket) ?? 0) + 1);
    }
  }

  /** Everything pending, one batch per tenant, and nothing pending any more. */
  drain(): ApprovalBatch[] {
    const batches: ApprovalBatch[] = [];
    for (const { windowMs, now, buckets, keys } of this.byTenant.values()) {
      const args = [now, windowMs];
      for (const [bucket, count] of buckets) {
        const colon = bucket.indexOf(':');
        args.push(Number(bucket.slice(0, colon)), Number(bucket.slice(colon + 1)), count);
      }
      batches.push({ keys, args });
    }
    this.byTenant.clear();
    return batches;
  }
}
