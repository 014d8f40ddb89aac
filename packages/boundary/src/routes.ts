import type { ConnectRouter } from "@connectrpc/connect";
import { BoundaryService, PeerService, QuarantineService } from "@bsfg/proto";
import type { BoundaryDeps } from "./deps.js";
import { egressHandlers, peerHandlers } from "./egress.js";
import { ingestHandlers } from "./ingest.js";
import { ledgerHandlers } from "./ledger.js";
import { quarantineHandlers } from "./quarantine.js";

/** Which part of the contract a deployable serves; the rest of both services answers `unimplemented`. */
export type Role = "ingest" | "egress" | "ledger" | "zone";

export function routesFor(role: Role, deps: BoundaryDeps): (router: ConnectRouter) => void {
  const serves = (r: Role) => role === r || role === "zone";
  return (router) => {
    router.service(BoundaryService, {
      ...(serves("ingest") ? ingestHandlers(deps) : {}),
      ...(serves("egress") ? egressHandlers(deps) : {}),
      ...(serves("ledger") ? ledgerHandlers(deps) : {}),
    });
    router.service(PeerService, serves("egress") ? peerHandlers(deps) : {});
    // Operators' verbs live with admission: ingest (and the all-in-one zone).
    router.service(QuarantineService, serves("ingest") ? quarantineHandlers(deps) : {});
  };
}
