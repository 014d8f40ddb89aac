/**
 * Wakes long-polling FetchFacts calls when their stream grows. While anyone
 * waits on a stream, one poll of its high-water mark serves every waiter, so
 * the cost is bounded by the number of streams, not by callers or append rate.
 */
export interface HighWaterWatch {
  /** Resolves true when the stream's last offset exceeds `after`, false at the deadline or on abort. */
  waitBeyond(stream: string, after: number, deadline: number, signal?: AbortSignal): Promise<boolean>;
  close(): void;
}

interface Waiter {
  readonly after: number;
  readonly deadline: number;
  resolve(grew: boolean): void;
}

export function highWaterWatch(highWater: (stream: string) => Promise<number>, intervalMs = 20): HighWaterWatch {
  const waiters = new Map<string, Set<Waiter>>();
  const polling = new Set<string>();
  let closed = false;

  async function poll(stream: string): Promise<void> {
    polling.add(stream);
    try {
      while (!closed && (waiters.get(stream)?.size ?? 0) > 0) {
        const last = await highWater(stream).catch(() => undefined);
        const now = Date.now();
        for (const waiter of waiters.get(stream) ?? []) {
          if (last !== undefined && last > waiter.after) waiter.resolve(true);
          else if (now >= waiter.deadline) waiter.resolve(false);
        }
        if ((waiters.get(stream)?.size ?? 0) > 0) await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
    } finally {
      polling.delete(stream);
    }
  }

  return {
    waitBeyond(stream, after, deadline, signal) {
      if (closed || Date.now() >= deadline || signal?.aborted) return Promise.resolve(false);
      return new Promise<boolean>((resolve) => {
        let set = waiters.get(stream);
        if (!set) waiters.set(stream, (set = new Set()));
        const waiter: Waiter = {
          after,
          deadline,
          resolve: (grew) => {
            set.delete(waiter);
            signal?.removeEventListener("abort", onAbort);
            resolve(grew);
          },
        };
        const onAbort = () => waiter.resolve(false);
        signal?.addEventListener("abort", onAbort, { once: true });
        set.add(waiter);
        if (!polling.has(stream)) void poll(stream);
      });
    },
    close() {
      closed = true;
      for (const set of waiters.values()) for (const waiter of [...set]) waiter.resolve(false);
    },
  };
}
