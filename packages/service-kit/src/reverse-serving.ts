import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { BoundaryService, PeerService } from "@bsfg/proto";
import type { ServedPeerConfig } from "@bsfg/config";
import type { ReverseRole, ReverseTarget } from "@bsfg/reverse";

/** What a deployable of an outbound-only zone dials and serves over the connections it opens. */
export interface ReverseServing {
  /** The peers' reverse listeners (config `serve`). */
  readonly targets: readonly ReverseTarget[];
  /** The verbs this deployable serves there: an egress, a ledger, or both (the all-in-one). */
  readonly roles: readonly ReverseRole[];
  /** This replica's name in the peer's link status. */
  readonly replica: string;
}

/** Every reverse listener of every served peer (config `serve`): one connection each. */
export function reverseTargets(serve: Readonly<Record<string, ServedPeerConfig>>): ReverseTarget[] {
  return Object.entries(serve).flatMap(([peer, served]) => served.urls.map((url) => ({ peer, url, identity: served.identity })));
}

const path = (service: { typeName: string }, method: { name: string }) => `/${service.typeName}/${method.name}`;

/** The procedures a peer may call over a reversed connection, per role: what it would call on our egress and ledger. */
const VERBS: Record<ReverseRole, readonly string[]> = {
  egress: [path(BoundaryService, BoundaryService.method.fetchFacts), path(PeerService, PeerService.method.fetchObject), path(PeerService, PeerService.method.statObject)],
  ledger: [path(BoundaryService, BoundaryService.method.confirmReceipt)],
};

/**
 * Serves only the peer verbs of `roles` (the all-in-one would otherwise also offer
 * AppendFact and the quarantine over a connection meant for pulling); anything else
 * is `unimplemented`, as Connect and gRPC clients read it.
 */
export function peerVerbsOnly(roles: readonly ReverseRole[], handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void) {
  const allowed = new Set(roles.flatMap((role) => VERBS[role]));
  return (req: Http2ServerRequest, res: Http2ServerResponse) => {
    const procedure = (req.url ?? "").split("?")[0]!;
    if (allowed.has(procedure)) return handler(req, res);
    const message = `${procedure} is not served over a reverse connection (only ${[...allowed].join(", ")})`;
    if ((req.headers["content-type"] ?? "").startsWith("application/grpc")) {
      res.writeHead(200, { "content-type": "application/grpc", "grpc-status": "12", "grpc-message": encodeURIComponent(message) });
      res.end();
      return;
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: "unimplemented", message }));
  };
}
