import { Code, ConnectError, type Interceptor, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import type { FastifyBaseLogger } from "fastify";
import type { Policy } from "@bsfg/config";
import { AppendStatus, errorInfoOf, Reason, rejection, type AppendFactResponse, type FactMessage } from "@bsfg/proto";
import { markReported, reclassifyMalformedRequest } from "./malformed-request.js";
import { peerIdentityKey } from "./peer-identity.js";

/**
 * Logs every rejection once, as structured JSON with code, reason, identity and
 * context; turns anything that is not a ConnectError into `internal` without
 * leaking its message to the caller.
 */
export function rejectionLogger(log: FastifyBaseLogger): Interceptor {
  return (next) => async (req) => {
    const peer = req.contextValues.get(peerIdentityKey);
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const logged = (err: unknown): ConnectError => {
      if (err instanceof ConnectError) {
        // A streaming call's request is read inside the handler: its malformed messages show up here.
        reclassifyMalformedRequest(err);
        markReported(err);
        const info = errorInfoOf(err);
        log.warn({ event: "rejected", procedure, code: Code[err.code], reason: info?.reason, identity: peer?.names[0], ...requestContext(req), ...info?.metadata, message: err.rawMessage }, "call rejected");
        return err;
      }
      log.error({ event: "failed", procedure, identity: peer?.names[0], ...requestContext(req), err }, "call failed");
      return new ConnectError("internal error", Code.Internal);
    };
    let res;
    try {
      res = await next(req);
    } catch (err) {
      throw logged(err);
    }
    if (!res.stream) {
      // A conflicting duplicate is a per-message result, not a failed call: still one line per refused message.
      if (req.method.name === "AppendFact") {
        (res.message as AppendFactResponse).results.forEach((result, index) => {
          if (result.status !== AppendStatus.CONFLICTING_DUPLICATE) return;
          log.warn({ event: "rejected", procedure, code: Code[Code.AlreadyExists], reason: Reason.ConflictingDuplicate, identity: peer?.names[0], index: String(index), message_id: result.messageId, offset: String(result.offset), message: "the message_id is stored with another payload; nothing was written" }, "message rejected");
        });
      }
      return res;
    }
    // A server stream fails while it is read: a streaming handler's checks run on the first read.
    const messages = res.message;
    return { ...res, message: (async function* () {
      try {
        yield* messages;
      } catch (err) {
        throw logged(err);
      }
    })() };
  };
}

/** What a rejection log line says about the call when the error's metadata does not: its consumer, or its message(s). */
function requestContext(req: UnaryRequest | StreamRequest): Record<string, string | number> {
  if (req.stream) return {};
  const message = req.message as { consumerName?: unknown; messages?: unknown };
  if (typeof message.consumerName === "string" && message.consumerName !== "") return { consumer: message.consumerName };
  if (req.method.name === "AppendFact" && Array.isArray(message.messages)) {
    const messages = message.messages as FactMessage[];
    const first = messages[0]?.envelope?.messageId;
    if (messages.length === 1 && first) return { message_id: first };
    return { messages: messages.length, ...(first ? { first_message_id: first } : {}) };
  }
  return {};
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
