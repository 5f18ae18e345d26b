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
  /** counts key → minute → approvals. */
  byKey: Map<string, Map<number, number>>;
}

export class PendingApprovals {
  private readonly byTenant = new Map<string, TenantApprovals>();

  /** One approval of a send recorded in `minute`, for each of the subjects' counts hashes. */
  add(tenant: string, windowMs: number, countsKeys: readonly string[], minute: number, now: number): void {
    const group = `${tenant}\0${windowMs}`;
    let pending = this.byTenant.get(group);
    if (pending === undefined) {
      pending = { windowMs, now, byKey: new Map() };
      this.byTenant.set(group, pending);
    }
    pending.now = Math.max(pending.now, now);
    for (const key of countsKeys) {
      let minutes = pending.byKey.get(key);
      if (minutes === undefined) {
        minutes = new Map();
        pending.byKey.set(key, minutes);
      }
      minutes.set(minute, (minutes.get(minute) ?? 0) + 1);
    }
  }

  /** Everything pending, one batch per tenant, and nothing pending any more. */
  drain(): ApprovalBatch[] {
    const batches: ApprovalBatch[] = [];
    for (const { windowMs, now, byKey } of this.byTenant.values()) {
      const keys = [...byKey.keys()];
      const args = [now, windowMs];
      keys.forEach((key, i) => {
        for (const [minute, count] of byKey.get(key) ?? []) args.push(i + 1, minute, count);
      });
      batches.push({ keys, args });
    }
    this.byTenant.clear();
    return batches;
  }
}
