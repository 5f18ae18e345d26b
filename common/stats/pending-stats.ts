import type { StatsWrite } from './stats-write.js';

/**
 * Stats writes not yet applied, merged by key: many events' counts become one write per hash
 * (the tenant's hour), whose fields are the sums. A write's field names already carry its minute
 * and its key the hour, so merging changes nothing about where an event is counted; the expiry is
 * the same for every write of one key.
 */
export class PendingStats {
  private readonly byKey = new Map<string, { expireAt: string | number; amounts: Map<string, number> }>();

  add(write: StatsWrite): void {
    let pending = this.byKey.get(write.key);
    if (pending === undefined) {
      pending = { expireAt: write.args[0] ?? 0, amounts: new Map() };
      this.byKey.set(write.key, pending);
    }
    for (let i = 1; i + 1 < write.args.length; i += 2) {
      const field = String(write.args[i]);
      pending.amounts.set(field, (pending.amounts.get(field) ?? 0) + Number(write.args[i + 1]));
    }
  }

  /** Everything pending, one write per key, and nothing pending any more. */
  drain(): StatsWrite[] {
    const writes: StatsWrite[] = [];
    for (const [key, { expireAt, amounts }] of this.byKey) {
      const args: (string | number)[] = [expireAt];
      for (const [field, amount] of amounts) if (amount !== 0) args.push(field, amount);
      if (args.length > 1) writes.push({ key, args });
    }
    this.byKey.clear();
    return writes;
  }
}
