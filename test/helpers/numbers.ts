import { randomInt } from 'node:crypto';

// The four digits before the simulator's magic suffix walk a counter from a random start, so
// one test process never hands out the same number twice (a random pick collided often enough
// to trip the per-destination send limits) while separate processes still start apart.
let nextBlock = randomInt(10_000);

/** A valid Indonesian mobile number ending in the simulator's magic digits, distinct per call in this process. */
export function indonesianMobile(last4: string): string {
  const block = nextBlock;
  nextBlock = (nextBlock + 1) % 10_000;
  return `+62812${String(block).padStart(4, '0')}${last4}`;
}
