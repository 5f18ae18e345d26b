/**
 * Fixed-bucket histograms for the latency samples of `/v1/stats`. A sample only increments the
 * count of its bucket, so a minute of traffic costs a dozen integers however many samples it
 * had, and minutes merge by adding counts. Percentiles are read back the way Prometheus'
 * `histogram_quantile` does it: find the bucket holding the rank, interpolate linearly inside it.
 * Their resolution is therefore the bucket width, exactly as on the Grafana panels.
 */

/**
 * Index of the bucket `value` falls in: the first upper bound ≥ value (buckets are `le`, as in
 * Prometheus), or `bounds.length` for the overflow bucket above the last bound.
 */
export function bucketIndex(bounds: readonly number[], value: number): number {
  for (let i = 0; i < bounds.length; i += 1) {
    if (value <= (bounds[i] ?? Number.POSITIVE_INFINITY)) return i;
  }
  return bounds.length;
}

/**
 * The `q`-quantile (0 < q ≤ 1) of the samples counted in `counts` (one count per bucket of
 * `bounds`, then the overflow bucket), or null without samples. The first bucket starts at 0. A
 * rank in the overflow bucket answers the last finite bound: the histogram cannot say more.
 */
export function percentile(bounds: readonly number[], counts: readonly number[], q: number): number | null {
  if (!(q > 0 && q <= 1)) throw new RangeError(`quantile must be in (0, 1], got ${q}`);
  const total = counts.reduce((sum, count) => sum + count, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i += 1) {
    const count = counts[i] ?? 0;
    if (count > 0 && below + count >= rank) {
      if (i >= bounds.length) return bounds.at(-1) ?? null;
      const lower = i === 0 ? 0 : (bounds[i - 1] ?? 0);
      const upper = bounds[i] ?? lower;
      return lower + (upper - lower) * ((rank - below) / count);
    }
    below += count;
  }
  return bounds.at(-1) ?? null;
}
