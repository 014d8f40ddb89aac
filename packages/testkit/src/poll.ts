export interface PollOptions {
  /** Give up after this long; default 10 000 ms. */
  timeoutMs?: number;
  /** Pause between attempts; default 50 ms. */
  intervalMs?: number;
  /** Human description of the awaited condition, used in the timeout error. */
  what?: string;
}

/** Internal extension: lets the harness stop polling when e.g. the server process died. */
export interface AbortablePollOptions extends PollOptions {
  signal?: AbortSignal;
}

export type PollCheck<T> = () =>
  | Promise<T | undefined | null | false>
  | T
  | undefined
  | null
  | false;

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_INTERVAL_MS = 50;

/**
 * Poll `check` until it returns a truthy value or the deadline passes.
 *
 * A throwing check counts as "not yet" (typical while a server is still coming
 * up: connection refused, stream not found, ...); the last error is reported
 * in the timeout message and as `cause`, so real bugs are still visible.
 */
export function pollUntil<T>(check: PollCheck<T>, opts: PollOptions = {}): Promise<T> {
  return poll(check, opts);
}

export async function poll<T>(check: PollCheck<T>, opts: AbortablePollOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
  const what = opts.what ?? "condition";
  const { signal } = opts;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let attempts = 0;

  for (;;) {
    signal?.throwIfAborted();
    attempts += 1;
    try {
      // A hanging check (e.g. a request to a frozen server) must not outlive the deadline.
      const value = await withDeadline(Promise.resolve().then(check), deadline, signal);
      if (value) return value;
      lastError = undefined;
    } catch (err) {
      if (err === DEADLINE_PASSED) break;
      signal?.throwIfAborted();
      lastError = err;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    await delay(Math.min(intervalMs, remaining), signal);
  }

  const detail = lastError === undefined ? "" : `; last error: ${describe(lastError)}`;
  throw new Error(`Timed out after ${timeoutMs}ms (${attempts} attempts) waiting for ${what}${detail}`, {
    cause: lastError,
  });
}

const DEADLINE_PASSED = Symbol("deadline passed");

function withDeadline<T>(work: Promise<T>, deadline: number, signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => finish(() => reject(signal?.reason));
    const timer = setTimeout(() => finish(() => reject(DEADLINE_PASSED)), Math.max(0, deadline - Date.now()));
    signal?.addEventListener("abort", onAbort, { once: true });
    function finish(settle: () => void): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      settle();
    }
    work.then(
      (value) => finish(() => resolve(value)),
      (err: unknown) => finish(() => reject(err)),
    );
  });
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
