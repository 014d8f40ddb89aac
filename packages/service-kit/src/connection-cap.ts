import type { TLSSocket } from "node:tls";
import { Code, createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { FastifyBaseLogger } from "fastify";
import type { Policy } from "@bsfg/config";
import { Reason, rejection } from "@bsfg/proto";
import type { BsfgMetrics } from "@bsfg/telemetry";
import { markReported } from "./malformed-request.js";
import { countRefusedBeforeRead } from "./metrics-interceptor.js";
import { identityOfSocket } from "./peer-identity.js";

/** How long a connection over its identity's cap stays open to hear why, if it makes no call. */
export const OVER_CAP_GRACE_MS = 5_000;

/** The client connection a call arrived on (set by the listening port's context values). */
export const connectionKey = createContextKey<TLSSocket | undefined>(undefined, { description: "bsfg client connection" });

/**
 * At most `perIdentity` client connections per identity on one listening port, HTTP/2 and
 * HTTP/1.1 alike. With 128 streams per connection and a request limit per stream, that
 * bounds what one identity can make the process buffer at once. A connection over the cap
 * stays open long enough to say why: each call on it is refused before its body is read
 * (resource_exhausted / too_many_connections), then the connection is closed, so a client
 * that reconnects once one of its connections is gone gets in; one that makes no call is
 * closed after OVER_CAP_GRACE_MS (a flood of idle connections is not held). Certificates without a policy
 * share one allowance: they are refused anyway, and cannot crowd out anyone else.
 */
export interface ConnectionCap {
  /** Counts a verified client connection of the listening port. */
  admit(socket: TLSSocket): void;
  /** A request gate: refuses calls on a connection over its identity's cap. */
  gate(context: HandlerContext): void;
  /** Connections held now, per identity. */
  held(): ReadonlyMap<string, number>;
}

export function connectionCap(perIdentity: number, policy: Policy, log: FastifyBaseLogger, metrics: BsfgMetrics, close: (socket: TLSSocket) => void): ConnectionCap {
  const held = new Map<string, Set<TLSSocket>>();
  const over = new WeakMap<TLSSocket, string>();

  return {
    admit(socket) {
      const peer = identityOfSocket(socket);
      const key = (peer && policy.identityOf(peer.names)) ?? "(no policy)";
      let sockets = held.get(key);
      if (!sockets) held.set(key, (sockets = new Set()));
      if (sockets.size >= perIdentity) {
        over.set(socket, key);
        log.warn({ event: "connection_refused", reason: Reason.TooManyConnections, identity: key, held: sockets.size, limit: perIdentity, remote: socket.remoteAddress }, "identity holds too many connections");
        setTimeout(() => close(socket), OVER_CAP_GRACE_MS).unref();
        return;
      }
      sockets.add(socket);
      socket.once("close", () => {
        sockets.delete(socket);
        if (sockets.size === 0 && held.get(key) === sockets) held.delete(key);
      });
    },
    gate(context) {
      const socket = context.values.get(connectionKey);
      const key = socket === undefined ? undefined : over.get(socket);
      if (key === undefined) return;
      const err = rejection(Code.ResourceExhausted, Reason.TooManyConnections,
        `identity ${key} already holds ${perIdentity} connections to this service (connections.perIdentity); reuse one, or close one and reconnect`,
        { identity: key, limit: String(perIdentity) });
      markReported(err);
      log.warn({ event: "rejected", procedure: `${context.service.typeName}/${context.method.name}`, code: Code[err.code], reason: Reason.TooManyConnections, identity: key, limit: perIdentity, before: "request read" }, "call rejected");
      countRefusedBeforeRead(metrics, context.method.name, err);
      // Once this answer is out, the connection goes; the client's next one is counted anew.
      setImmediate(() => close(socket!));
      throw err;
    },
    held: () => new Map([...held].map(([key, sockets]) => [key, sockets.size])),
  };
}
