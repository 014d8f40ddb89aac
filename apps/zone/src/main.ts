#!/usr/bin/env node
// bsfg-zone --config <zone.yaml>: all-in-one: ingest, egress, ledger and the sync worker in one process, for a laptop or a small plant.
import { startDeployable } from "@bsfg/boundary";
import { configFromCommandLine } from "@bsfg/config";
import { startSyncDeployable } from "@bsfg/replication";
import { onReloadSignal, onStopSignal } from "@bsfg/service-kit";
import { startTracing } from "@bsfg/telemetry";

const config = configFromCommandLine("bsfg-zone");
const tracing = startTracing({ serviceName: "bsfg-zone", zone: config.zone });
// SIGHUP reads the server's and the sync worker's certificate files now. Installed before
// start-up, because Node's default for SIGHUP ends the process; one that comes while
// starting is ignored (the periodic check still sees rotated files).
let reload: () => Promise<unknown> = async () => undefined;
onReloadSignal(() => reload());
const services = await startDeployable("zone", config);
services.server.log.info({ event: "tracing", enabled: tracing.enabled }, tracing.enabled ? "tracing: OTLP export on" : "tracing: off");
// The worker shares the services' zone store; its /links status is served on health.sync if configured.
// It also shares their metrics: one /metrics on health.zone shows the whole process, links included.
const sync = await startSyncDeployable(config, { store: services.store, metrics: services.metrics });
reload = async () => {
  await services.reloadTls();
  await sync.reloadTls();
};
onStopSignal(async () => {
  await sync.stop();
  await services.stop();
  await tracing.shutdown();
}, services.server.log);
