import { configFromCommandLine, createPolicy, printableConfig, type ZoneConfig } from "@bsfg/config";
import { startBoundaryServer, onStopSignal, type BoundaryServer } from "@bsfg/service-kit";
import { openZoneStore, type ZoneStore } from "@bsfg/storage";
import { highWaterWatch } from "./high-water-watch.js";
import { routesFor, type Role } from "./routes.js";

export interface RunningDeployable {
  readonly server: BoundaryServer;
  readonly store: ZoneStore;
  stop(): Promise<void>;
}

/** Starts one deployable (or the all-in-one `zone`) from a loaded configuration. */
export async function startDeployable(role: Role, config: ZoneConfig, overrides: { listen?: string; healthListen?: string; logStream?: NodeJS.WritableStream } = {}): Promise<RunningDeployable> {
  const name = `bsfg-${role}`;
  const store = await openZoneStore(config.storage, { servers: config.nats.servers, name });
  const watch = highWaterWatch((stream) => store.highWater(stream));
  try {
    const server = await startBoundaryServer({
      name,
      config,
      listen: overrides.listen ?? config.listen[role],
      healthListen: overrides.healthListen ?? config.health[role],
      routes: routesFor(role, { config, store, policy: createPolicy(config.policy), watch }),
      ready: () => store.ready(),
      ...(overrides.logStream ? { logStream: overrides.logStream } : {}),
    });
    server.log.info({ event: "configuration", config: printableConfig(config), topology: store.topologyReport }, "started");
    return {
      server,
      store,
      async stop() {
        // Long polls answer now (with what they have) instead of holding the drain up.
        watch.close();
        await server.shutdown();
        await store.close();
      },
    };
  } catch (err) {
    watch.close();
    await store.close();
    throw err;
  }
}

/** The command line of every boundary deployable: `--config <zone.yaml>` (or BSFG_CONFIG). */
export async function main(role: Role, argv = process.argv.slice(2)): Promise<void> {
  const running = await startDeployable(role, configFromCommandLine(`bsfg-${role}`, argv));
  onStopSignal(() => running.stop(), running.server.log);
}
