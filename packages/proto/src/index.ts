export * from "./gen/bsfg/v1/fact_pb.js";
export * from "./gen/bsfg/v1/boundary_pb.js";
export * from "./gen/bsfg/v1/peer_pb.js";
export * from "./gen/bsfg/v1/quarantine_pb.js";
export { Reason, rejection, reasonOf, errorInfoOf, Code, ConnectError } from "./errors.js";
export { encodeFactMessage } from "./fact-message-wire.js";
export { factHeadOf, type FactHead } from "./fact-head.js";
