import { createServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session, type Settings } from "node:http2";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { HELLO_PATH, type Hello, type ReverseRole } from "./hello.js";
import { requireIdentity } from "./identity.js";
import { keepAlive, type Keepalive } from "./keepalive.js";
import type { ReverseLog } from "./log.js";

/** A peer's reverse listener this zone keeps a connection to: one per replica of the peer's sync worker. */
export interface ReverseTarget {
  readonly peer: string;
  /** "https://host:port" of the listener. */
  readonly url: string;
  /** The identity (CN or DNS SAN) the listener's certificate must carry. */
  readonly identity: string;
}

export interface ReverseDialerOptions {
  readonly zone: string;
  /** This replica's name, told to the peer in the hello. */
  readonly replica: string;
  /** The verbs this deployable serves over the connections it dials. */
  readonly roles: readonly ReverseRole[];
  readonly targets: readonly ReverseTarget[];
  /** The certificate set for the next dial (a rotated certificate is used from the next connection on). */
  readonly tls: () => { readonly ca: string | Buffer; readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Serves the calls the peer makes (a Connect node adapter). */
  readonly handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void;
  /** HTTP/2 settings this side announces as the server (e.g. maxConcurrentStreams). */
  readonly settings?: Settings;
  /** Between dials after a failure: exponential from `initialMs` to `maxMs`, each wait half to all of its step. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly keepalive?: Keepalive;
  /** A dial that has not completed its TLS handshake by then fails. */
  readonly connectTimeoutMs?: number;
  readonly log: ReverseLog;
  /** Each dial's outcome, for metrics. */
  readonly onDial?: (peer: string, outcome: "connected" | "failed") => void;
}

export type DialState = "connecting" | "connected" | "backing_off" | "closed";

/** One target's connection, as link status and /links show it. */
export interface DialStatus {
  readonly peer: string;
  readonly url: string;
  readonly state: DialState;
  /** When the open connection was established (epoch ms). */
  readonly connectedAtMs: number | undefined;
  readonly dials: number;
  readonly failures: number;
  readonly lastError: string | undefined;
}

export interface ReverseDialer {
  status(): DialStatus[];
  /** Calls being served over the dialed connections right now. */
  sessions(): readonly ServerHttp2Session[];
  /** Stops dialing; each open connection is told to go away (GOAWAY) and closed once its calls are done, or after `graceMs`. */
  close(graceMs: number): Promise<void>;
}

const DEFAULT_BACKOFF = { initialMs: 250, maxMs: 10_000 };
/** A connection that lived less than this counts as a failed dial (a peer that accepts, then refuses). */
const SHORT_LIVED_MS = 2_000;

/**
 * Keeps one mutually authenticated TLS connection open to each target, redialing with
 * backoff, and serves HTTP/2 over each as the server: the peer that accepted the
 * connection is the HTTP/2 client and calls this zone's verbs, as if it had connected
 * to them. Nothing listens here.
 */
export function startReverseDialer(opts: ReverseDialerOptions): ReverseDialer {
  const backoff = opts.backoff ?? DEFAULT_BACKOFF;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  const hello: Hello = { zone: opts.zone, replica: opts.replica, roles: opts.roles };
  const helloBody = JSON.stringify(hello);
  const handler = (req: Http2ServerRequest, res: Http2ServerResponse) => {
    if (req.url === HELLO_PATH && req.method === "GET") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(helloBody);
      return;
    }
    opts.handler(req, res);
  };
  const stopped = new AbortController();
  const open = new Set<ServerHttp2Session>();
  const states = opts.targets.map((target) => ({
    target,
    state: "connecting" as DialState,
    connectedAtMs: undefined as number | undefined,
    dials: 0,
    failures: 0,
    lastError: undefined as string | undefined,
  }));

  const dial = (target: ReverseTarget) => new Promise<TLSSocket>((resolve, reject) => {
    const url = new URL(target.url);
    const tls = opts.tls();
    const socket = tlsConnect({
      host: url.hostname,
      port: Number(url.port || 443),
      servername: url.hostname,
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      minVersion: "TLSv1.3",
      ALPNProtocols: ["h2"],
      checkServerIdentity: requireIdentity(target.identity),
    });
    const timer = setTimeout(() => socket.destroy(new Error(`no TLS connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.removeListener("error", reject);
      if (socket.alpnProtocol !== "h2") {
        socket.destroy();
        reject(new Error(`the listener did not agree on HTTP/2 (ALPN ${String(socket.alpnProtocol)})`));
        return;
      }
      resolve(socket);
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });

  const serve = (socket: TLSSocket): ServerHttp2Session => {
    const server = createServer({ ...(opts.settings ? { settings: opts.settings } : {}) }, handler);
    let session: ServerHttp2Session | undefined;
    server.once("session", (s: ServerHttp2Session) => {
      session = s;
    });
    server.emit("connection", socket);
    if (!session) throw new Error("HTTP/2 did not take the connection");
    return session;
  };

  async function keepDialing(entry: (typeof states)[number]): Promise<void> {
    const { target } = entry;
    let failures = 0;
    while (!stopped.signal.aborted) {
      entry.state = "connecting";
      entry.dials++;
      let livedMs = 0;
      try {
        const socket = await dial(target);
        if (stopped.signal.aborted) {
          socket.destroy();
          break;
        }
        const session = serve(socket);
        open.add(session);
        const connectedAt = Date.now();
        entry.state = "connected";
        entry.connectedAtMs = connectedAt;
        opts.onDial?.(target.peer, "connected");
        opts.log.info({ event: "reverse_connected", peer: target.peer, url: target.url }, `reverse link to ${target.peer}: connected to ${target.url}`);
        session.on("error", (err) => {
          entry.lastError = err.message;
        });
        const stopKeepalive = keepAlive(session, opts.keepalive);
        await new Promise<void>((resolve) => session.once("close", resolve));
        stopKeepalive();
        open.delete(session);
        livedMs = Date.now() - connectedAt;
        entry.connectedAtMs = undefined;
        if (!stopped.signal.aborted) opts.log.warn({ event: "reverse_disconnected", peer: target.peer, url: target.url, livedMs, error: entry.lastError }, `reverse link to ${target.peer}: connection to ${target.url} closed`);
      } catch (err) {
        entry.lastError = (err as Error).message;
        entry.failures++;
        opts.onDial?.(target.peer, "failed");
        opts.log.warn({ event: "reverse_dial_failed", peer: target.peer, url: target.url, error: entry.lastError, failures: failures + 1 }, `reverse link to ${target.peer}: dial to ${target.url} failed`);
      }
      if (stopped.signal.aborted) break;
      failures = livedMs >= SHORT_LIVED_MS ? 0 : failures + 1;
      entry.state = "backing_off";
      await pause(delay(failures, backoff), stopped.signal);
    }
    entry.state = "closed";
  }

  const loops = states.map((entry) => keepDialing(entry));

  return {
    status: () => states.map((s) => ({ peer: s.target.peer, url: s.target.url, state: s.state, connectedAtMs: s.connectedAtMs, dials: s.dials, failures: s.failures, lastError: s.lastError })),
    sessions: () => [...open],
    async close(graceMs) {
      stopped.abort();
      for (const session of open) session.close();
      const deadline = Date.now() + graceMs;
      while (open.size > 0 && Date.now() < deadline) await pause(10);
      for (const session of open) session.destroy();
      await Promise.all(loops);
    },
  };
}

/** The wait before the next dial after `failures` failures in a row (0: redial at once, e.g. after a long-lived connection). */
function delay(failures: number, backoff: { initialMs: number; maxMs: number }): number {
  if (failures === 0) return 0;
  const step = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (failures - 1));
  return step / 2 + Math.random() * (step / 2);
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
