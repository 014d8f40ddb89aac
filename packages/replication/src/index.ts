export { startSyncWorker, type SyncWorker, type SyncWorkerOptions } from "./worker.js";
export type { LinkStatus, LinkState, LinkError } from "./link-status.js";
export type { Logger } from "./logger.js";
export { startSyncDeployable, main, type RunningSync, type SyncOverrides } from "./run.js";
