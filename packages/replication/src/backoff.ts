/** Exponential backoff with full jitter: the n-th consecutive failure waits a random time up to initial · 2ⁿ⁻¹, capped. */
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
      // Never zero: a link that fails at once must not spin.
      return Math.max(initial / 2, random() * ceiling);
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
