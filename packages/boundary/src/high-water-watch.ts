/**
 * Wakes long-polling FetchFacts calls when their stream grows. While anyone
 * waits on a stream, one watcher serves every waiter: it reads the stream's
 * high-water mark when an append is announced on the stream's subjects (a core
 * NATS subscription, held only while someone waits), and at a slow interval as
 * a safety net. The cost is bounded by the number of streams, not by callers;
 * without announcements it polls at `intervalMs`.
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

export type AppendAnnouncements = (stream: string, onAppend: () => void) => () => void;

export function highWaterWatch(highWater: (stream: string) => Promise<number>, announcements?: AppendAnnouncements, intervalMs = announcements ? 1_000 : 20): HighWaterWatch {
  const waiters = new Map<string, Set<Waiter>>();
  const polling = new Set<string>();
  /** Per stream: resolves the watcher's current pause early. */
  const wakers = new Map<string, () => void>();
  /** Streams with an append announced since their last read. */
  const announced = new Set<string>();
  let closed = false;

  /** Waits for an announced append (or any waiter's deadline, or the safety interval). */
  const pauseFor = (stream: string, ms: number) => new Promise<void>((resolve) => {
    const timer = setTimeout(wake, ms);
    function wake() {
      clearTimeout(timer);
      wakers.delete(stream);
      resolve();
    }
    wakers.set(stream, wake);
  });

  async function poll(stream: string): Promise<void> {
    polling.add(stream);
    // Subscribe before the first read: an append between the two still wakes us.
    const stop = announcements?.(stream, () => {
      announced.add(stream);
      wakers.get(stream)?.();
    });
    try {
      while (!closed && (waiters.get(stream)?.size ?? 0) > 0) {
        announced.delete(stream);
        const last = await highWater(stream).catch(() => undefined);
        const now = Date.now();
        for (const waiter of waiters.get(stream) ?? []) {
          if (last !== undefined && last > waiter.after) waiter.resolve(true);
          else if (now >= waiter.deadline) waiter.resolve(false);
        }
        const set = waiters.get(stream);
        // An append announced during the read above: read again at once.
        if (set && set.size > 0 && !announced.has(stream)) {
          const nearest = Math.min(...[...set].map((w) => w.deadline)) - Date.now();
          await pauseFor(stream, Math.max(1, Math.min(intervalMs, nearest)));
        }
      }
    } finally {
      stop?.();
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
      for (const wake of [...wakers.values()]) wake();
      for (const set of waiters.values()) for (const waiter of [...set]) waiter.resolve(false);
    },
  };
}
