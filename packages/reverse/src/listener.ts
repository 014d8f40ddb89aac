import { connect as h2Connect, type ClientHttp2Session, type ClientHttp2Stream, type ClientSessionRequestOptions, type OutgoingHttpHeaders } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { createServer, type TLSSocket } from "node:tls";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ConnectTransportOptions } from "@connectrpc/connect-node";
import { HELLO_PATH, parseHello, type ReverseRole } from "./hello.js";
import { certificateNames } from "./identity.js";
import { keepAlive, type Keepalive } from "./keepalive.js";
import type { ReverseLog } from "./log.js";

/** A zone that dials this one (its links here are `dial: inbound`), known by its certificate's identity. */
export interface InboundPeer {
  readonly zone: string;
  readonly identity: string;
}

export interface ReverseListenerOptions {
  readonly host: string;
  readonly port: number;
  /** This zone's certificate (a server certificate: the dialing zone checks it) and the CA peers chain to. */
  readonly tls: { readonly ca: string | Buffer; readonly cert: string | Buffer; readonly key: string | Buffer };
  readonly peers: readonly InboundPeer[];
  readonly log: ReverseLog;
  readonly keepalive?: Keepalive;
  /** A dialer that has not answered the hello by then is dropped. */
  readonly helloTimeoutMs?: number;
  /** Connections kept per peer zone; more are refused (a reconnect storm cannot pile them up). */
  readonly maxConnectionsPerPeer?: number;
  /** How long a call waits for a connection from its peer before it fails `unavailable`. */
  readonly waitForConnectionMs?: number;
  /** Each connection's fate, for metrics. */
  readonly onConnection?: (peer: string, event: "accepted" | "refused" | "closed") => void;
}

/** One connection a peer dialed in, as link status shows it. */
export interface ReverseConnection {
  readonly peer: string;
  /** The name its certificate carries that the configuration expects. */
  readonly identity: string;
  readonly replica: string;
  readonly roles: readonly ReverseRole[];
  readonly remote: string;
  readonly connectedAtMs: number;
}

export interface ReverseListener {
  /** "https://host:port" that dialing zones are configured with. */
  readonly url: string;
  readonly port: number;
  /** A Connect session manager: calls `peer`'s `role` over one of the connections it dialed in, and moves to another when that one goes. */
  sessionManager(peer: string, role: ReverseRole): ReverseSessionManager;
  /** The connection calls to `peer`'s `role` use now, if any. */
  inUse(peer: string, role: ReverseRole): ReverseConnection | undefined;
  connections(): ReverseConnection[];
  reloadTls(tls: ReverseListenerOptions["tls"]): void;
  close(): Promise<void>;
}

/** The base URL a Connect transport calls `peer`'s `role` with through a reverse listener (its origin names the session manager). */
export function reverseBaseUrl(peer: string, role: ReverseRole): string {
  return `https://${role}.${peer}.reverse`;
}

/** What a Connect transport (connect-node) calls through: its `sessionManager` option. */
export type ReverseSessionManager = NonNullable<Extract<ConnectTransportOptions, { httpVersion: "2" }>["sessionManager"]>;

interface Live extends ReverseConnection {
  readonly session: ClientHttp2Session;
  draining: boolean;
}

/**
 * The accepting side of reverse connect: a TLS listener that the dialing zones connect
 * to. On each connection this side is the HTTP/2 *client*: it asks who called (the
 * hello), then calls that zone's verbs over it — FetchFacts, ConfirmReceipt, … —
 * exactly as it would over a connection it had opened. Identity is the certificate's.
 */
export async function startReverseListener(opts: ReverseListenerOptions): Promise<ReverseListener> {
  const helloTimeoutMs = opts.helloTimeoutMs ?? 10_000;
  const maxPerPeer = opts.maxConnectionsPerPeer ?? 16;
  const waitMs = opts.waitForConnectionMs ?? 3_000;
  const live: Live[] = [];
  const arrivals = new Set<() => void>();
  const sticky = new Map<string, Live>();
  const tlsOptions = (tls: ReverseListenerOptions["tls"]) => ({ ca: tls.ca, cert: tls.cert, key: tls.key, minVersion: "TLSv1.3" as const });
  const server = createServer({ ...tlsOptions(opts.tls), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ["h2"] });

  server.on("tlsClientError", (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    opts.log.warn({ event: "reverse_refused", code: err.code, reason: err.message, remote: socket.remoteAddress }, "reverse listener: TLS handshake failed");
  });
  server.on("secureConnection", (socket: TLSSocket) => {
    void accept(socket);
  });
  // Every connection, from its TCP accept on: close() ends those still in their handshake or hello too
  // (server.close() would wait for them, up to the TLS handshake timeout of 2 minutes).
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  async function accept(socket: TLSSocket): Promise<void> {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const names = certificateNames(socket.getPeerCertificate());
    const peer = opts.peers.find((p) => names.includes(p.identity));
    const refuse = (reason: string, zone = peer?.zone ?? "unknown") => {
      opts.log.warn({ event: "reverse_refused", peer: zone, identity: names[0], remote, reason }, `reverse listener: refused a connection from ${names[0] ?? "an unnamed certificate"}: ${reason}`);
      opts.onConnection?.(zone, "refused");
      socket.destroy();
    };
    if (!peer) return refuse(`its certificate (${names.join(", ") || "no names"}) is no inbound peer's identity`);
    if (socket.alpnProtocol !== "h2") return refuse("it did not agree on HTTP/2");
    if (live.filter((l) => l.peer === peer.zone).length >= maxPerPeer) return refuse(`${peer.zone} has ${maxPerPeer} connections open already`);
    const session = h2Connect(reverseBaseUrl(peer.zone, "egress"), { createConnection: () => socket });
    session.on("error", () => {
      // The close that follows removes the connection; a call on it fails on its own stream.
    });
    let hello;
    try {
      hello = parseHello(await get(session, HELLO_PATH, helloTimeoutMs));
    } catch (err) {
      session.destroy();
      return refuse(`no hello: ${(err as Error).message}`);
    }
    if (hello.zone !== peer.zone) {
      session.destroy();
      return refuse(`it says it is zone ${hello.zone}, but its certificate is ${peer.zone}'s`);
    }
    const connection: Live = { peer: peer.zone, identity: peer.identity, replica: hello.replica, roles: hello.roles, remote, connectedAtMs: Date.now(), session, draining: false };
    live.push(connection);
    const stopKeepalive = keepAlive(session, opts.keepalive);
    // A dialer that drains (GOAWAY) finishes the calls on this connection; new calls go elsewhere.
    session.once("goaway", () => {
      connection.draining = true;
    });
    session.once("close", () => {
      stopKeepalive();
      live.splice(live.indexOf(connection), 1);
      for (const [key, used] of sticky) if (used === connection) sticky.delete(key);
      opts.onConnection?.(peer.zone, "closed");
      opts.log.info({ event: "reverse_closed", peer: peer.zone, replica: hello.replica, remote }, `reverse listener: ${peer.zone} (${hello.replica}) disconnected`);
    });
    opts.onConnection?.(peer.zone, "accepted");
    opts.log.info({ event: "reverse_accepted", peer: peer.zone, replica: hello.replica, roles: hello.roles, remote }, `reverse listener: ${peer.zone} (${hello.replica}) connected, serving ${hello.roles.join(", ")}`);
    for (const arrived of [...arrivals]) arrived();
  }

  /** The connection for `peer`'s `role`: the one in use while it lasts, else the longest-lived. */
  const usable = (peer: string, role: ReverseRole) => {
    const key = `${peer}/${role}`;
    const current = sticky.get(key);
    if (current && !current.draining && !current.session.destroyed) return current;
    const next = live.find((l) => l.peer === peer && l.roles.includes(role) && !l.draining && !l.session.destroyed);
    if (next) sticky.set(key, next);
    else sticky.delete(key);
    return next;
  };

  async function connectionFor(peer: string, role: ReverseRole): Promise<Live> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const found = usable(peer, role);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ConnectError(`no connection from ${peer} serves ${role}: ${peer} dials this zone's reverse listener (${url}); check that it runs and reaches it`, Code.Unavailable);
      }
      await new Promise<void>((resolve) => {
        const arrived = () => {
          clearTimeout(timer);
          arrivals.delete(arrived);
          resolve();
        };
        const timer = setTimeout(arrived, left);
        arrivals.add(arrived);
      });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.removeListener("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `https://${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${port}`;
  const view = (l: Live): ReverseConnection => ({ peer: l.peer, identity: l.identity, replica: l.replica, roles: l.roles, remote: l.remote, connectedAtMs: l.connectedAtMs });

  return {
    url,
    port,
    sessionManager(peer, role) {
      return {
        authority: reverseBaseUrl(peer, role),
        async request(method: string, path: string, headers: OutgoingHttpHeaders, options: Omit<ClientSessionRequestOptions, "signal">): Promise<ClientHttp2Stream> {
          const connection = await connectionFor(peer, role);
          return connection.session.request({ ...headers, ":method": method, ":path": path }, options);
        },
        notifyResponseByteRead() {
          // Liveness is the keepalive's job here.
        },
      };
    },
    inUse(peer, role) {
      const found = usable(peer, role);
      return found ? view(found) : undefined;
    },
    connections: () => live.map(view),
    reloadTls(tls) {
      server.setSecureContext(tlsOptions(tls));
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const l of [...live]) l.session.destroy();
        for (const socket of sockets) socket.destroy();
      });
    },
  };
}

/** A GET over the session, its body as text; fails after `timeoutMs`. */
function get(session: ClientHttp2Session, path: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "GET", ":path": path });
    const timer = setTimeout(() => {
      stream.close();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    let status = 0;
    let body = "";
    stream.setEncoding("utf8");
    stream.on("response", (headers) => {
      status = Number(headers[":status"]);
    });
    stream.on("data", (chunk: string) => {
      if (body.length < 4_096) body += chunk;
    });
    stream.on("end", () => {
      clearTimeout(timer);
      if (status === 200) resolve(body);
      else reject(new Error(`answered ${status}`));
    });
    stream.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    stream.end();
  });
}
