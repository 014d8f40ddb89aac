import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { FastifyBaseLogger } from "fastify";
import type { Policy } from "@bsfg/config";
import { errorInfoOf, Reason, rejection } from "@bsfg/proto";
import { peerIdentityKey } from "./peer-identity.js";

/**
 * Logs every rejection once, as structured JSON with code, reason, identity and
 * context; turns anything that is not a ConnectError into `internal` without
 * leaking its message to the caller.
 */
export function rejectionLogger(log: FastifyBaseLogger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const peer = req.contextValues.get(peerIdentityKey);
      const procedure = `${req.service.typeName}/${req.method.name}`;
      if (err instanceof ConnectError) {
        const info = errorInfoOf(err);
        log.warn({ event: "rejected", procedure, code: Code[err.code], reason: info?.reason, identity: peer?.names[0], ...info?.metadata, message: err.rawMessage }, "call rejected");
        throw err;
      }
      log.error({ event: "failed", procedure, identity: peer?.names[0], err }, "call failed");
      throw new ConnectError("internal error", Code.Internal);
    }
  };
}

/** Deny by default: a caller whose certificate names no identity of the policy gets nothing at all. */
export function knownIdentityOnly(policy: Policy): Interceptor {
  return (next) => async (req) => {
    const peer = req.contextValues.get(peerIdentityKey);
    if (!peer) throw rejection(Code.Unauthenticated, Reason.NoClientCertificate, "a verified client certificate is required");
    if (policy.identityOf(peer.names) === undefined) {
      throw rejection(Code.PermissionDenied, Reason.UnknownIdentity, `certificate identity ${peer.names.join(", ") || "(no name)"} has no policy in this zone`, { identity: peer.names[0] ?? "" });
    }
    return next(req);
  };
}

/** While the service drains for shutdown, new calls are refused retry-safe so clients go elsewhere. */
export function refuseWhileDraining(draining: () => boolean): Interceptor {
  return (next) => async (req) => {
    if (draining()) throw rejection(Code.Unavailable, Reason.ShuttingDown, "this service is shutting down; retry");
    return next(req);
  };
}
