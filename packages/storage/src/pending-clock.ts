/**
 * Remembers when this process first saw each pending claim, on its own
 * monotonic clock. Deciding "abandoned" from these local observations rather
 * than from the server's timestamp keeps clock skew between hosts out of the
 * decision. Bounded: the oldest observations are forgotten first.
 */
export interface PendingClock {
  firstSeen(key: string, claimSeq: number): number;
}

export function pendingClock(capacity = 100_000): PendingClock {
  const seen = new Map<string, number>();
  return {
    firstSeen(key, claimSeq) {
      const id = `${key}@${claimSeq}`;
      let at = seen.get(id);
      if (at === undefined) {
        at = performance.now();
        seen.set(id, at);
        if (seen.size > capacity) seen.delete(seen.keys().next().value!);
      }
      return at;
    },
  };
}
