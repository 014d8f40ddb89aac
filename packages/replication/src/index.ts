export { startSyncWorker, type SyncWorker, type SyncWorkerOptions } from "./worker.js";
export type { LinkStatus, LinkState, LinkError } from "./link-status.js";
export { CONTROL_POLL_MS } from "./link.js";
export type { Logger } from "./logger.js";
export { startSyncDeployable, main, type RunningSync, type SyncOverrides } from "./run.js";
export { admitFact, type AdmittedFact, type AdmissionRules } from "./admission.js";
export { classifyRelayError, type RelayErrorClass } from "./relay-errors.js";
export { operatorActions, type OperatorActions, type OperatorActionDeps, type ReleaseOutcome, type DropOutcome } from "./operator-actions.js";
