import { configFromCommandLine, printableConfig, type ZoneConfig } from "@bsfg/config";
import { onStopSignal, startProbeServer, type ProbeServer } from "@bsfg/service-kit";
import { openZoneStore, type ZoneStore } from "@bsfg/storage";
import type { Logger } from "./logger.js";
import { startSyncWorker, type SyncWorker } from "./worker.js";

export interface RunningSync {
  readonly worker: SyncWorker;
  readonly store: ZoneStore;
  /** /healthz, /readyz and /links (every link's status as JSON), when `health.sync` is configured. */
  readonly probeUrl: string | undefined;
  readonly log: Logger;
  stop(): Promise<void>;
}

export interface SyncOverrides {
  readonly healthListen?: string;
  readonly logStream?: NodeJS.WritableStream;
  /** Share the zone store of an all-in-one process instead of opening one. */
  readonly store?: ZoneStore;
  readonly holder?: string;
}

/** The sync deployable: its own zone store, the worker, and a probe server with the links' status. */
export async function startSyncDeployable(config: ZoneConfig, overrides: SyncOverrides = {}): Promise<RunningSync> {
  const store = overrides.store ?? await openZoneStore(config.storage, { servers: config.nats.servers, name: "bsfg-sync" });
  let worker: SyncWorker | undefined;
  let probe: ProbeServer | undefined;
  try {
    probe = await startProbeServer({
      name: "bsfg-sync",
      config,
      listen: overrides.healthListen ?? config.health.sync,
      ready: () => store.ready(),
      routes: (app) => app.get("/links", async () => ({ zone: config.zone, links: worker?.status() ?? [] })),
      ...(overrides.logStream ? { logStream: overrides.logStream } : {}),
    });
    if (!overrides.store) probe.log.info({ event: "configuration", config: printableConfig(config), topology: store.topologyReport }, "started");
    worker = startSyncWorker(config, { store, log: probe.log, ...(overrides.holder ? { holder: overrides.holder } : {}) });
  } catch (err) {
    await probe?.close();
    if (!overrides.store) await store.close();
    throw err;
  }
  const started = { worker, probe };
  return {
    worker,
    store,
    probeUrl: probe.url,
    log: probe.log,
    async stop() {
      await started.worker.stop();
      await started.probe.close();
      if (!overrides.store) await store.close();
    },
  };
}

/** `bsfg-sync --config <zone.yaml>`. */
export async function main(argv = process.argv.slice(2)): Promise<void> {
  const running = await startSyncDeployable(configFromCommandLine("bsfg-sync", argv));
  onStopSignal(() => running.stop(), running.log);
}
