/**
 * Tenant and destination MAC of the verifications this process created lately, so the checks
 * that follow skip the read that learns them before the lockout check (verification.store.ts
 * `owner`). Both are fixed for a verification's life, which is what makes holding them in memory
 * safe. Only ids that no other verification can ever carry go in: a random id, never one derived
 * from an Idempotency-Key (that id is reused once its record is gone, possibly for another
 * destination). The store's scripts still check the owner on every call; this only saves a read.
 *
 * Bounded: the oldest entry goes when a new one arrives at capacity (Map keeps insertion order).
 */
export interface VerificationOwner {
  tenant: string;
  destinationMac: string;
}

export class RecentOwners {
  private readonly owners = new Map<string, VerificationOwner>();

  constructor(private readonly capacity: number) {}

  remember(id: string, owner: VerificationOwner): void {
    if (this.capacity <= 0) return;
    this.owners.delete(id);
    if (this.owners.size >= this.capacity) {
      const oldest = this.owners.keys().next();
      if (oldest.done !== true) this.owners.delete(oldest.value);
    }
    this.owners.set(id, owner);
  }

  get(id: string): VerificationOwner | undefined {
    return this.owners.get(id);
  }

  get size(): number {
    return this.owners.size;
  }
}
