import { configFromCommandLine, createPolicy, printableConfig, type ZoneConfig } from "@bsfg/config";
import { hostname } from "node:os";
import { reverseTargets, startBoundaryServer, startTlsReloader, onReloadSignal, onStopSignal, readiness, watchDurability, type BoundaryServer, type DurabilityWatch, type TlsCheckOutcome } from "@bsfg/service-kit";
import { startTracing } from "@bsfg/telemetry";
import { createMetrics, observeCertificates, observeStore, type BsfgMetrics } from "@bsfg/telemetry";
import { openZoneStore, type ZoneStore } from "@bsfg/storage";
import { highWaterWatch } from "./high-water-watch.js";
import { routesFor, type Role } from "./routes.js";

export interface RunningDeployable {
  readonly server: BoundaryServer;
  readonly store: ZoneStore;
  /** The deployable's metrics (/metrics on its probe port); the all-in-one's sync worker reports into them too. */
  readonly metrics: BsfgMetrics;
  /** Reads the certificate files now (SIGHUP) and serves a rotated certificate to new connections. */
  reloadTls(): Promise<TlsCheckOutcome>;
  stop(): Promise<void>;
}

/** Starts one deployable (or the all-in-one `zone`) from a loaded configuration. */
export async function startDeployable(role: Role, config: ZoneConfig, overrides: { listen?: string; healthListen?: string; logStream?: NodeJS.WritableStream; metrics?: BsfgMetrics } = {}): Promise<RunningDeployable> {
  const name = `bsfg-${role}`;
  const store = await openZoneStore(config.storage, { servers: config.nats.servers, auth: config.nats.auth, tls: config.nats.tls, name, durability: config.nats.sync });
  const watch = highWaterWatch((stream) => store.highWater(stream), (stream, onAppend) => store.watchAppends(stream, onAppend));
  // One registry per deployable, never per module: tests run several zones in one process.
  const metrics = overrides.metrics ?? createMetrics({ zone: config.zone, service: name });
  const certificates = observeCertificates(metrics, { server: config.tls.cert, ca: config.tls.ca });
  const unobserve = [observeStore(metrics, store), certificates.stop];
  let durability: DurabilityWatch | undefined;
  const { notDurable, notReady } = readiness(store, () => durability);
  // The server's logger exists once it started; operator actions are logged through it.
  let serverLog: { info(fields: object, message: string): void } | undefined;
  try {
    const server = await startBoundaryServer({
      name,
      config,
      listen: overrides.listen ?? config.listen[role],
      healthListen: overrides.healthListen ?? config.health[role],
      routes: routesFor(role, { config, store, policy: createPolicy(config.policy), watch, notDurable, metrics, log: (fields, message) => serverLog?.info(fields, message) }),
      notReady,
      metrics,
      // Outbound-only zone (config `serve`): egress and ledger also serve peers over connections they dial.
      reverse: role === "ingest" ? undefined : { targets: reverseTargets(config.serve), roles: role === "zone" ? ["egress", "ledger"] : [role], replica: `${hostname()}:${process.pid}:${role}` },
      ...(overrides.logStream ? { logStream: overrides.logStream } : {}),
    });
    serverLog = server.log;
    server.log.info({ event: "configuration", config: printableConfig(config), topology: store.topologyReport }, "started");
    durability = await watchDurability(config.nats, server.log);
    const durable = durability;
    const tls = startTlsReloader({
      name: "server",
      paths: config.tls.paths,
      current: config.tls,
      intervalMs: config.tls.reloadCheckMs,
      log: server.log,
      apply(pems) {
        server.reloadTls(pems);
        certificates.set({ server: pems.cert, ca: pems.ca });
      },
    });
    return {
      server,
      store,
      metrics,
      reloadTls: () => tls.check("signal"),
      async stop() {
        tls.close();
        durable.close();
        // Long polls answer now (with what they have) instead of holding the drain up.
        watch.close();
        await server.shutdown();
        for (const stop of unobserve) stop();
        await store.close();
      },
    };
  } catch (err) {
    for (const stop of unobserve) stop();
    watch.close();
    await store.close();
    throw err;
  }
}

/** The command line of every boundary deployable: `--config <zone.yaml>` (or BSFG_CONFIG). */
export async function main(role: Role, argv = process.argv.slice(2)): Promise<void> {
  const config = configFromCommandLine(`bsfg-${role}`, argv);
  const tracing = startTracing({ serviceName: `bsfg-${role}`, zone: config.zone });
  // Installed before start-up: Node's default for SIGHUP ends the process. One that comes
  // while starting is ignored; the periodic check still sees rotated files.
  let reload: () => Promise<unknown> = async () => undefined;
  onReloadSignal(() => reload());
  const running = await startDeployable(role, config);
  reload = () => running.reloadTls();
  running.server.log.info({ event: "tracing", enabled: tracing.enabled }, tracing.enabled ? "tracing: OTLP export on" : "tracing: off");
  onStopSignal(async () => {
    await running.stop();
    await tracing.shutdown();
  }, running.server.log);
}
