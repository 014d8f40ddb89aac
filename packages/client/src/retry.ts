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

/**
 * Socket errors that mean "this endpoint is not there right now": nothing was answered,
 * and a retry (on another replica, or later) may succeed. Every bsfg.v1 operation is
 * idempotent, so a call that was in flight when its connection broke is safe to resend.
 */
const unreachable = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ERR_HTTP2_GOAWAY_SESSION", "ERR_HTTP2_INVALID_SESSION", "ERR_HTTP2_STREAM_CANCEL", "ERR_HTTP2_SESSION_ERROR"]);

export function isRetryable(err: unknown): boolean {
  const error = ConnectError.from(err);
  if (retryable.has(error.code)) return true;
  // A stream the server refused (after GOAWAY, e.g. while it drains) was never processed.
  // connect-node 2.1 reports it as `internal`; it is safe to send again.
  if (error.code === Code.Internal && error.message.includes("NGHTTP2_REFUSED_STREAM")) return true;
  // A refused or reset connection: connect-node reports most as `unavailable` or `aborted`
  // (above), but depending on when the socket broke some surface as `unknown`, `internal`
  // or `canceled` with the Node error as the cause. A call the caller cancelled is never
  // retried (withRetry checks its signal first).
  return socketErrorCode(err) !== undefined;
}

/** The code of a Node socket / HTTP/2 session error anywhere in the cause chain, if it is one of `unreachable`. */
function socketErrorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && unreachable.has(code)) return code;
  }
  return undefined;
}

/** Runs `call` until it succeeds, fails for good, or attempts run out; exponential backoff with full jitter. */
export async function withRetry<T>(options: RetryOptions, call: (attempt: number) => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(attempt);
    } catch (err) {
      if (signal?.aborted || attempt >= options.attempts || !isRetryable(err)) throw err;
      const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** (attempt - 1));
      await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
    }
  }
}
