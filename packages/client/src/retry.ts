import { Code, ConnectError } from "@connectrpc/connect";

export interface RetryOptions {
  /** Attempts in total, the first included. */
  readonly attempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

export const defaultRetry: RetryOptions = { attempts: 6, initialDelayMs: 100, maxDelayMs: 5_000 };

/**
 * Codes after which the same call may simply be sent again. Every bsfg.v1
 * operation is idempotent, so this is only about whether trying again can help.
 */
const retryable = new Set<Code>([Code.Unavailable, Code.ResourceExhausted, Code.Aborted, Code.DeadlineExceeded]);

export function isRetryable(err: unknown): boolean {
  const error = ConnectError.from(err);
  if (retryable.has(error.code)) return true;
  // A stream the server refused (after GOAWAY, e.g. while it drains) was never processed.
  // connect-node 2.1 reports it as `internal`; it is safe to send again.
  return error.code === Code.Internal && error.message.includes("NGHTTP2_REFUSED_STREAM");
}

/** Runs `call` until it succeeds, fails for good, or attempts run out; exponential backoff with full jitter. */
export async function withRetry<T>(options: RetryOptions, call: (attempt: number) => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(attempt);
    } catch (err) {
      if (attempt >= options.attempts || !isRetryable(err) || signal?.aborted) throw err;
      const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** (attempt - 1));
      await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
    }
  }
}
