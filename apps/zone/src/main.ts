#!/usr/bin/env node
// bsfg-zone --config <zone.yaml>: all-in-one: ingest, egress, ledger and the sync worker in one process, for a laptop or a small plant.
import { startDeployable } from "@bsfg/boundary";
import { configFromCommandLine } from "@bsfg/config";
import { startSyncDeployable } from "@bsfg/replication";
import { onStopSignal } from "@bsfg/service-kit";

const config = configFromCommandLine("bsfg-zone");
const services = await startDeployable("zone", config);
// The worker shares the services' zone store; its /links status is served on health.sync if configured.
const sync = await startSyncDeployable(config, { store: services.store });
onStopSignal(async () => {
  await sync.stop();
  await services.stop();
}, services.server.log);
