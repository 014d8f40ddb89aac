import type { Http2Session } from "node:http2";
import type { TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { createContextValues, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { startReverseDialer, type ReverseDialer } from "@bsfg/reverse";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { createPolicy, type ZoneConfig } from "@bsfg/config";
import { createMetrics, serverTracing, tlsFailureCode, type BsfgMetrics } from "@bsfg/telemetry";
import { metricsInterceptor } from "./metrics-interceptor.js";
import { healthRoutes, type NotReady } from "./health.js";
import { knownIdentityOnly, refuseWhileDraining, rejectionLogger } from "./interceptors.js";
import { malformedRequestGate } from "./malformed-request.js";
import { authorizeFirst } from "./authorize-first.js";
import { connectionCap, connectionKey } from "./connection-cap.js";
import { parseListen, urlFor } from "./listen-address.js";
import { probeAccess } from "./probe-access.js";
import { identityOfSocket, peerIdentityKey } from "./peer-identity.js";
import { peerVerbsOnly, type ReverseServing } from "./reverse-serving.js";
import type { TlsPems } from "./tls-reload.js";

export interface BoundaryServerOptions {
  /** Deployable name for logs, e.g. "bsfg-ingest". */
  readonly name: string;
  readonly config: ZoneConfig;
  /** "host:port" for the mTLS endpoint (port 0 picks a free one). */
  readonly listen: string;
  /** Plain-HTTP "host:port" for /healthz and /readyz (probes carry no client certificate). */
  readonly healthListen?: string | undefined;
  /** Registers the services this deployable serves. */
  readonly routes: (router: ConnectRouter) => void;
  /** Why the deployable is not ready (JetStream silent, servers not durable), or undefined. */
  readonly notReady: NotReady;
  /** Where JSON logs go (default: stdout). */
  readonly logStream?: NodeJS.WritableStream;
  /** The deployable's metrics, served as /metrics on the probe port (default: a registry of its own). */
  readonly metrics?: BsfgMetrics;
  /**
   * Outbound-only zone: dial these peers' reverse listeners and serve them the same
   * calls, with the same interceptors and policy, over the connections this side opens.
   */
  readonly reverse?: ReverseServing | undefined;
}

export interface BoundaryServer {
  readonly url: string;
  readonly port: number;
  readonly healthUrl: string | undefined;
  readonly log: FastifyBaseLogger;
  readonly metrics: BsfgMetrics;
  /** The connections this deployable dials to peers (outbound-only zone), if any. */
  readonly reverse: ReverseDialer | undefined;
  /** Calls being served right now. */
  inFlight(): number;
  /** Serves new connections with this certificate set (established ones keep theirs). */
  reloadTls(pems: TlsPems): void;
  /**
   * Stops taking calls (new ones get unavailable/shutting_down, HTTP/2 clients
   * get GOAWAY), lets in-flight calls finish within the configured grace, then
   * closes every connection.
   */
  shutdown(): Promise<void>;
}

/** One deployable's Connect endpoint over HTTP/2 with mutual TLS 1.3. */
export async function startBoundaryServer(opts: BoundaryServerOptions): Promise<BoundaryServer> {
  const { config } = opts;
  const logger = { level: config.logLevel, base: { service: opts.name, zone: config.zone }, ...(opts.logStream ? { stream: opts.logStream } : {}) };
  const app = Fastify({
    http2: true,
    https: {
      key: config.tls.key,
      cert: config.tls.cert,
      ca: config.tls.ca,
      requestCert: true,
      // Verified below, before HTTP/2 sees the connection, so the log can say why a client was refused.
      rejectUnauthorized: false,
      minVersion: "TLSv1.3",
      // Connect unary calls also work over HTTP/1.1 (curl, browsers behind a proxy); gRPC needs h2.
      allowHTTP1: true,
      // Node's default lets one connection open 4,294,967,295 streams at once.
      settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
    },
    // Without this, close() waits for idle HTTP/2 sessions (72 s).
    forceCloseConnections: true,
    logger,
    // Rejections are logged once each by the rejection logger; per-request lines would drown them.
    logController: new LogController({ disableRequestLogging: true }),
  });
  const log = app.log;
  const metrics = opts.metrics ?? createMetrics({ zone: config.zone, service: opts.name });

  let draining = false;
  let inFlight = 0;
  let reloadReverse: (pems: TlsPems) => void = () => {};
  const policy = createPolicy(config.policy);
  const sessions = new Set<Http2Session>();
  const sessionOf = new WeakMap<TLSSocket, Http2Session>();
  const cap = connectionCap(config.connections.perIdentity, policy, log, metrics, (socket) => {
    const session = sessionOf.get(socket);
    if (session) { if (!session.closed && !session.destroyed) session.close(); }
    else if (!socket.destroyed) socket.end();
  });
  app.server.on("session", (session: Http2Session) => {
    sessions.add(session);
    // Node hands out a proxy of the TLS socket per HTTP/2 session; calls see that proxy.
    if (session.socket) {
      sessionOf.set(session.socket as TLSSocket, session);
      cap.admit(session.socket as TLSSocket);
    }
    session.once("close", () => sessions.delete(session));
    // A client that reconnects while we drain is told to go away at once.
    if (draining) session.close();
  });
  app.server.on("tlsClientError", (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    log.warn({ event: "tls_failure", code: err.code, reason: err.message, remote: socket.remoteAddress }, "TLS handshake failed");
    metrics.tlsFailures.inc({ code: tlsFailureCode(err.code) });
  });
  // Runs before the HTTP/2 server's own listener: an unverified client never gets a session.
  app.server.prependListener("secureConnection", (socket: TLSSocket) => {
    if (socket.authorized) return;
    // authorizationError is typed as an Error but is a string code such as CERT_HAS_EXPIRED.
    const error = socket.authorizationError as unknown as (Error & { code?: string }) | string | null;
    const presented = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
    const code = !presented ? "NO_CLIENT_CERTIFICATE" : typeof error === "string" ? error : error?.code ?? "UNVERIFIED";
    const reason = !presented ? "no client certificate presented" : typeof error === "string" ? error : error?.message ?? "unverified";
    log.warn({ event: "tls_failure", code, reason, remote: socket.remoteAddress }, "client certificate refused");
    metrics.tlsFailures.inc({ code: tlsFailureCode(code) });
    socket.destroy();
  });
  // After the check above, so only verified connections count; HTTP/2 ones count as sessions (below).
  app.server.on("secureConnection", (socket: TLSSocket) => {
    if (!socket.destroyed && socket.alpnProtocol !== "h2") cap.admit(socket);
  });
  /** A call is in flight from its request until its response finished or its stream closed. */
  const countInFlight = (res: { once(event: "close" | "finish", listener: () => void): unknown }) => {
    inFlight++;
    let done = false;
    const finished = () => {
      if (!done) {
        done = true;
        inFlight--;
      }
    };
    res.once("close", finished);
    res.once("finish", finished);
  };
  app.addHook("onRequest", async (_request, reply) => countInFlight(reply.raw));

  const maxMessageBytes = Math.max(config.storage.limits.maxBatchBytes, config.storage.objectChunkBytes) * 2;
  // One set of options for the listening port and the dialed connections: the same checks either way.
  const connect = {
    routes: opts.routes,
    // Tracing first: the span covers the refusals below as well.
    interceptors: [serverTracing(config.zone, (req) => req.contextValues.get(peerIdentityKey)?.cn), metricsInterceptor(metrics), rejectionLogger(log), refuseWhileDraining(() => draining), knownIdentityOnly(policy)],
    readMaxBytes: maxMessageBytes,
    // A request body that is not a message of its type is invalid_argument / malformed_request (see malformed-request.ts).
    // Authorization before the body is read; a malformed body is reclassified once it is (see each file).
    requestGate: requestGates(malformedRequestGate(log, metrics), cap.gate, authorizeFirst(policy, log, metrics)),
    // JSON text that is not UTF-8 is refused: the default decoder would store U+FFFD in its place.
    jsonOptions: strictJson,
  };
  await app.register(fastifyConnectPlugin, {
    ...connect,
    contextValues: (req) => {
      const socket = tlsSocketOf(req.raw);
      return createContextValues().set(peerIdentityKey, identityOfSocket(socket)).set(connectionKey, socket);
    },
  });
  const notReady: NotReady = async () => (draining ? "draining" : await opts.notReady());
  await app.register(healthRoutes(notReady));

  const { host, port } = parseListen(opts.listen);
  await app.listen({ host, port });
  const boundPort = (app.server.address() as AddressInfo).port;

  let health: FastifyInstance | undefined;
  let healthUrl: string | undefined;
  let reverse: ReverseDialer | undefined;
  if (opts.healthListen) {
    health = Fastify({ logger: false });
    const access = probeAccess(config.health.allowFrom, log);
    if (access) health.addHook("onRequest", access);
    // /metrics only here: the mTLS port answers identities of the policy, and scrapers have none.
    await health.register(healthRoutes(notReady, metrics));
    // Outbound-only: each dialed connection's state, for operators and probes (no error text beyond the dial's own).
    if (opts.reverse) health.get("/reverse", async () => ({ zone: config.zone, dials: reverse?.status() ?? [] }));
    const h = parseListen(opts.healthListen);
    await health.listen({ host: h.host, port: h.port });
    healthUrl = urlFor("http", h.host, (health.server.address() as AddressInfo).port);
  }
  const url = urlFor("https", host, boundPort);
  log.info({ event: "listening", url, health: healthUrl }, "serving");

  if (opts.reverse && opts.reverse.targets.length > 0) {
    // The peer is the HTTP/2 client on these connections; its identity is its listener's certificate.
    const adapter = connectNodeAdapter({ ...connect, contextValues: (req) => createContextValues().set(peerIdentityKey, identityOfSocket(tlsSocketOf(req))) });
    const counted = peerVerbsOnly(opts.reverse.roles, (req: Http2ServerRequest, res: Http2ServerResponse) => {
      countInFlight(res);
      adapter(req, res);
    });
    let pems: TlsPems = { ca: config.tls.ca, cert: config.tls.cert, key: config.tls.key };
    reverse = startReverseDialer({
      zone: config.zone,
      replica: opts.reverse.replica,
      roles: opts.reverse.roles,
      targets: opts.reverse.targets,
      tls: () => pems,
      handler: counted,
      log,
      onDial: (peer, outcome) => metrics.reverseDials.inc({ peer, outcome }),
    });
    reloadReverse = (next) => {
      pems = next;
    };
    log.info({ event: "dialing", targets: opts.reverse.targets.map((t) => `${t.peer} ${t.url}`), roles: opts.reverse.roles }, `outbound-only: serving ${opts.reverse.roles.join(", ")} over connections to ${opts.reverse.targets.length} reverse listener(s)`);
  }

  let stopping: Promise<void> | undefined;
  return {
    url,
    port: boundPort,
    healthUrl,
    log,
    metrics,
    reverse,
    inFlight: () => inFlight,
    reloadTls(pems) {
      app.server.setSecureContext({ key: pems.key, cert: pems.cert, ca: pems.ca, minVersion: "TLSv1.3" });
      reloadReverse(pems);
    },
    shutdown() {
      stopping ??= (async () => {
        draining = true;
        log.info({ event: "draining", inFlight }, "shutting down: finishing in-flight calls");
        for (const session of sessions) session.close();
        // Dialed connections get GOAWAY too; their calls count in inFlight like the others.
        const reverseClosed = reverse?.close(config.shutdownGrace);
        const deadline = Date.now() + config.shutdownGrace;
        while (inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
        if (inFlight > 0) log.warn({ event: "shutdown_forced", inFlight }, "grace period over: closing remaining calls");
        // Whatever is still connected goes now: Node's server.close() would otherwise wait
        // for every HTTP/2 session, up to its 72 s idle timeout.
        for (const session of sessions) session.destroy();
        await reverseClosed;
        await app.close();
        await health?.close();
        log.info({ event: "stopped" }, "stopped");
      })();
      return stopping;
    },
  };
}

/** Calls one client connection may have open at once (a batch client pipelines far fewer). */
const MAX_CONCURRENT_STREAMS = 128;

/** Several request gates, in order (a gate that throws refuses the call before its body is read). */
function requestGates(...gates: Array<(context: HandlerContext) => void>): (context: HandlerContext) => void {
  return (context) => {
    for (const gate of gates) gate(context);
  };
}

/** Connect's JSON codec (unknown fields ignored, its default) reading only well-formed UTF-8. */
const strictJson = { ignoreUnknownFields: true, textDecoder: new TextDecoder("utf-8", { fatal: true }) };

/** The TLS socket under an HTTP/1.1 or HTTP/2 request. */
function tlsSocketOf(raw: unknown): TLSSocket | undefined {
  const req = raw as { stream?: { session?: { socket?: TLSSocket } }; socket?: TLSSocket };
  return req.stream?.session?.socket ?? req.socket;
}
