import { Code, type HandlerContext } from "@connectrpc/connect";
import type { FastifyBaseLogger } from "fastify";
import type { CallVerb, Policy } from "@bsfg/config";
import { BoundaryService, errorInfoOf, PeerService, QuarantineService, Reason, rejection } from "@bsfg/proto";
import type { BsfgMetrics } from "@bsfg/telemetry";
import { authorize } from "./authorize.js";
import { markReported } from "./malformed-request.js";
import { countRefusedBeforeRead } from "./metrics-interceptor.js";
import { peerIdentityKey } from "./peer-identity.js";

const procedure = (service: { typeName: string }, method: { name: string }) => `${service.typeName}/${method.name}`;

/** What each method needs of the caller's policy at the least (see CallVerb). */
const NEEDS: ReadonlyMap<string, CallVerb> = new Map([
  [procedure(BoundaryService, BoundaryService.method.appendFact), "append"],
  [procedure(BoundaryService, BoundaryService.method.putObject), "write_object"],
  [procedure(BoundaryService, BoundaryService.method.fetchFacts), "use_consumer"],
  [procedure(BoundaryService, BoundaryService.method.confirmReceipt), "use_consumer"],
  [procedure(PeerService, PeerService.method.fetchObject), "read_object"],
  [procedure(PeerService, PeerService.method.statObject), "read_object"],
  [procedure(QuarantineService, QuarantineService.method.listQuarantined), "quarantine_read"],
  [procedure(QuarantineService, QuarantineService.method.getQuarantined), "quarantine_read"],
  [procedure(QuarantineService, QuarantineService.method.releaseQuarantined), "quarantine_release"],
  [procedure(QuarantineService, QuarantineService.method.dropQuarantined), "quarantine_drop"],
]);

/**
 * Authorization before any work: a connect-es request gate, which runs before the request
 * body is read. A caller without a verified certificate, whose certificate names no identity
 * of the policy, or whose policy grants nothing the method needs, is refused here — the body
 * it sends is never buffered, decompressed or parsed (an identity with no policy once made a
 * zone buffer 60 bodies of 7 MiB). The fine checks (this from_zone, this consumer, this
 * bucket) follow once the request is read. Logged and counted like every rejection; the log
 * line cannot name the consumer or bucket asked for, since that is in the unread request.
 */
export function authorizeFirst(policy: Policy, log: FastifyBaseLogger, metrics: BsfgMetrics): (context: HandlerContext) => void {
  return (context) => {
    const peer = context.values.get(peerIdentityKey);
    const name = procedure(context.service, context.method);
    try {
      if (!peer) throw rejection(Code.Unauthenticated, Reason.NoClientCertificate, "a verified client certificate is required");
      const verb = NEEDS.get(name);
      if (verb) authorize(policy.mayCall(peer.names, verb));
      // Any other procedure (none is served but these): deny by default all the same.
      else if (policy.identityOf(peer.names) === undefined) throw rejection(Code.PermissionDenied, Reason.UnknownIdentity, `certificate identity ${peer.names.join(", ") || "(no name)"} has no policy in this zone`, { identity: peer.names[0] ?? "" });
    } catch (err) {
      markReported(err);
      const info = errorInfoOf(err);
      const code = (err as { code: Code }).code;
      log.warn({ event: "rejected", procedure: name, code: Code[code], reason: info?.reason, identity: peer?.names[0], ...info?.metadata, message: (err as { rawMessage?: string }).rawMessage, before: "request read" }, "call rejected");
      countRefusedBeforeRead(metrics, context.method.name, err);
      throw err;
    }
  };
}
