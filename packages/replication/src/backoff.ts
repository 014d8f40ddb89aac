/**
 * Exponential backoff with equal jitter: the n-th consecutive failure waits
 * between half and all of initial · 2ⁿ⁻¹ (capped at max). Half the delay is
 * guaranteed, so a failing link provably slows down; the random half keeps
 * replicas and links from retrying in lockstep.
 */
export interface Backoff {
  /** The delay before the next attempt, after one more failure. */
  next(): number;
  reset(): void;
  readonly failures: number;
}

export function backoff({ initial, max }: { readonly initial: number; readonly max: number }, random: () => number = Math.random): Backoff {
  let failures = 0;
  return {
    next() {
      failures++;
      const ceiling = Math.min(max, initial * 2 ** Math.min(failures - 1, 30));
      return ceiling / 2 + random() * (ceiling / 2);
    },
    reset() {
      failures = 0;
    },
    get failures() {
      return failures;
    },
  };
}

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
