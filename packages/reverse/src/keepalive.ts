import type { Http2Session } from "node:http2";

/** PING every `intervalMs`; a PING not answered within `timeoutMs` ends the connection (its side redials or fails over). */
export interface Keepalive {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

const DEFAULT_KEEPALIVE: Keepalive = { intervalMs: 5_000, timeoutMs: 10_000 };

/**
 * A reversed connection has no request of its own to notice that the other side is gone
 * (a cut cable sends no FIN): both ends ping. Returns a function that stops pinging.
 */
export function keepAlive(session: Http2Session, keepalive: Keepalive = DEFAULT_KEEPALIVE): () => void {
  let waiting: NodeJS.Timeout | undefined;
  const interval = setInterval(() => {
    if (waiting || session.destroyed || session.closed) return;
    waiting = setTimeout(() => session.destroy(new Error(`no answer to a PING within ${keepalive.timeoutMs} ms`)), keepalive.timeoutMs);
    const sent = session.ping((err) => {
      clearTimeout(waiting);
      waiting = undefined;
      if (err && !session.destroyed) session.destroy(err);
    });
    if (!sent) {
      clearTimeout(waiting);
      waiting = undefined;
    }
  }, keepalive.intervalMs);
  interval.unref();
  return () => {
    clearInterval(interval);
    clearTimeout(waiting);
  };
}
