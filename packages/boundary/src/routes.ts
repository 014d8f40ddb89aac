import type { ConnectRouter } from "@connectrpc/connect";
import { BoundaryService, PeerService, QuarantineService } from "@bsfg/proto";
import type { BoundaryDeps } from "./deps.js";
import { egressHandlers, peerHandlers } from "./egress.js";
import { ingestHandlers } from "./ingest.js";
import { ledgerHandlers } from "./ledger.js";
import { quarantineHandlers } from "./quarantine.js";

/** Which part of the contract a deployable serves; the rest of both services answers `unimplemented`. */
export type Role = "ingest" | "egress" | "ledger" | "zone";

/**
 * The largest request of a method that carries no facts or object bytes: FetchFacts,
 * ConfirmReceipt, FetchObject, StatObject and the quarantine verbs ask with a few names and
 * numbers. Their services read no more than this per message; only AppendFact (a batch) and
 * PutObject (a chunk) keep the listening port's larger limit.
 */
export const SMALL_REQUEST_BYTES = 64 * 1024;

export function routesFor(role: Role, deps: BoundaryDeps): (router: ConnectRouter) => void {
  const serves = (r: Role) => role === r || role === "zone";
  const small = { readMaxBytes: SMALL_REQUEST_BYTES };
  return (router) => {
    router.service(BoundaryService, {
      ...(serves("ingest") ? ingestHandlers(deps) : {}),
      ...(serves("egress") ? egressHandlers(deps) : {}),
      ...(serves("ledger") ? ledgerHandlers(deps) : {}),
    // One limit per service: where AppendFact and PutObject are served (ingest, the all-in-one
    // zone), FetchFacts and ConfirmReceipt share their limit.
    }, serves("ingest") ? undefined : small);
    router.service(PeerService, serves("egress") ? peerHandlers(deps) : {}, small);
    // Operators' verbs live with admission: ingest (and the all-in-one zone).
    router.service(QuarantineService, serves("ingest") ? quarantineHandlers(deps) : {}, small);
  };
}
