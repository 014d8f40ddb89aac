/** p50 and p99 of how long facts took to cross a link, over a recent window. */
export interface CrossingStats {
  readonly p50Seconds: number;
  readonly p99Seconds: number;
  /** Facts the percentiles are taken over. */
  readonly samples: number;
}

/**
 * Crossing latency of a link: from a fact's storage in the peer zone (its stored_at, by the
 * peer's clock) to its append here (by this zone's clock) — so clock skew between the zones
 * shows in it, as it does in bsfg_replication_lag_seconds. Keeps the last `keepMs` and at most
 * `max` samples (a busy link's newest).
 */
export interface CrossingWindow {
  add(storedAtMs: readonly number[], appendedAtMs: number): void;
  stats(now: number): CrossingStats | undefined;
}

export function crossingWindow(keepMs = 5 * 60_000, max = 2_000): CrossingWindow {
  let samples: Array<{ at: number; ms: number }> = [];
  const prune = (now: number) => {
    const from = samples.findIndex((s) => now - s.at <= keepMs);
    samples = from === -1 ? [] : samples.slice(Math.max(from, samples.length - max));
  };
  return {
    add(storedAtMs, appendedAtMs) {
      for (const storedAt of storedAtMs) samples.push({ at: appendedAtMs, ms: Math.max(0, appendedAtMs - storedAt) });
      if (samples.length > 2 * max) prune(appendedAtMs);
    },
    stats(now) {
      prune(now);
      if (samples.length === 0) return undefined;
      const sorted = samples.map((s) => s.ms).sort((a, b) => a - b);
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! / 1_000;
      return { p50Seconds: at(0.5), p99Seconds: at(0.99), samples: sorted.length };
    },
  };
}
