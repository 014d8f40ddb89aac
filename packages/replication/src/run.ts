import { configFromCommandLine, createPolicy, printableConfig, type ZoneConfig } from "@bsfg/config";
import {
  onReloadSignal, onStopSignal, readiness, startConsoleListener, startProbeServer, startTlsReloader, watchDurability,
  type ConsoleListener, type DurabilityWatch, type ProbeServer, type TlsCheckOutcome, type TlsReloader,
} from "@bsfg/service-kit";
import { parseListen } from "@bsfg/service-kit";
import { startReverseListener, type ReverseListener } from "@bsfg/reverse";
import { openZoneStore, type ZoneStore } from "@bsfg/storage";
import { createMetrics, observeCertificates, observeLinks, observeStore, startTracing, type BsfgMetrics } from "@bsfg/telemetry";
import type { Logger } from "./logger.js";
import { startSyncWorker, type SyncWorker } from "./worker.js";
import { withoutOperatorText } from "@bsfg/console";
import { consoleSnapshots, operatorConsole, readOnlyConsole } from "./console.js";
import { operatorActions } from "./operator-actions.js";

export interface RunningSync {
  readonly worker: SyncWorker;
  readonly store: ZoneStore;
  /** /healthz, /readyz and /links (every link's status as JSON), when `health.sync` is configured. */
  readonly probeUrl: string | undefined;
  readonly log: Logger;
  /** Link lag, state and totals (and, with a registry of its own, store gauges and certificates). */
  readonly metrics: BsfgMetrics;
  /** Where outbound-only peers dial this replica (listen.reverse), when any peer is dial: inbound. */
  readonly reverseUrl: string | undefined;
  /** The zone console over mTLS (listen.console), when configured. */
  readonly consoleUrl: string | undefined;
  /** Reads the client certificate files now (SIGHUP); a rotated certificate is presented to peers from the next call on. */
  reloadTls(): Promise<TlsCheckOutcome>;
  stop(): Promise<void>;
}

export interface SyncOverrides {
  readonly healthListen?: string;
  readonly logStream?: NodeJS.WritableStream;
  /** Share the zone store of an all-in-one process instead of opening one. */
  readonly store?: ZoneStore;
  readonly holder?: string;
  /**
   * Report into another deployable's metrics (the all-in-one's, served on its own probe
   * port); this probe port then serves no /metrics, so nothing is scraped twice.
   */
  readonly metrics?: BsfgMetrics;
  /** The reverse listener's address instead of listen.reverse (tests: port 0). */
  readonly reverseListen?: string;
  /** The mTLS console's address instead of listen.console (tests: port 0). */
  readonly consoleListen?: string;
}

/** The sync deployable: its own zone store, the worker, and a probe server with the links' status. */
export async function startSyncDeployable(config: ZoneConfig, overrides: SyncOverrides = {}): Promise<RunningSync> {
  const store = overrides.store ?? await openZoneStore(config.storage, { servers: config.nats.servers, auth: config.nats.auth, tls: config.nats.tls, name: "bsfg-sync", durability: config.nats.sync });
  let worker: SyncWorker | undefined;
  let probe: ProbeServer | undefined;
  const metrics = overrides.metrics ?? createMetrics({ zone: config.zone, service: "bsfg-sync" });
  // A registry of its own reports the zone's gauges too; a shared one has them from its owner.
  const watched = (pems: { ca: string; cert: string }) => (overrides.metrics ? { "sync-client": pems.cert } : { "sync-client": pems.cert, ca: pems.ca });
  const certificates = observeCertificates(metrics, watched({ ca: config.tls.ca, cert: config.sync.tls.cert }));
  const unobserve = overrides.metrics ? [certificates.stop] : [observeStore(metrics, store), certificates.stop];
  let tls: TlsReloader | undefined;
  let durability: DurabilityWatch | undefined;
  let reverse: ReverseListener | undefined;
  let serverTls: TlsReloader | undefined;
  let operatorListener: ConsoleListener | undefined;
  const { notDurable, notReady } = readiness(store, () => durability);
  const policy = createPolicy(config.policy);
  const actionLog = (fields: Record<string, unknown>, message: string) => probe?.log.info(fields, message);
  const actions = operatorActions({ config, store, policy, metrics, log: actionLog });
  // The console's snapshot (docs/operations.md, "Console"), shared by both consoles; trimmed per viewer.
  const snapshot = consoleSnapshots(config, store, () => worker?.status() ?? []);
  try {
    probe = await startProbeServer({
      name: "bsfg-sync",
      config,
      listen: overrides.healthListen ?? config.health.sync,
      notReady,
      // The probe port answers anyone who reaches it: error codes and reasons, never error text
      // (which can name hosts, identities and paths); the text is in the link_error log lines.
      routes: (app) => {
        app.get("/links", async () => ({ zone: config.zone, links: (worker?.status() ?? []).map(withoutOperatorText) }));
        // The zone console, read-only, on this same port.
        readOnlyConsole(app, config.zone, snapshot, app.log);
      },
      metrics: overrides.metrics ? undefined : metrics,
      ...(overrides.logStream ? { logStream: overrides.logStream } : {}),
    });
    if (!overrides.store) probe.log.info({ event: "configuration", config: printableConfig(config), topology: store.topologyReport }, "started");
    durability = await watchDurability(config.nats, probe.log);
    // Peers that accept no inbound connection dial this replica instead (dial: inbound).
    const inbound = Object.entries(config.peers).filter(([, p]) => p.dial === "inbound").map(([zone, p]) => ({ zone, identity: p.identity }));
    if (inbound.length > 0) {
      const { host, port } = parseListen(overrides.reverseListen ?? config.listen.reverse!);
      reverse = await startReverseListener({
        host, port, tls: { ca: config.tls.ca, cert: config.tls.cert, key: config.tls.key }, peers: inbound, log: probe.log,
        onConnection: (peer, event) => metrics.reverseConnections.inc({ peer, event }),
      });
      probe.log.info({ event: "reverse_listening", url: reverse.url, peers: inbound.map((p) => p.zone) }, `reverse listener: ${inbound.map((p) => p.zone).join(", ")} dial in at ${reverse.url}`);
    }
    const consoleAt = overrides.consoleListen ?? config.listen.console;
    if (consoleAt !== undefined) {
      const log = probe.log;
      operatorListener = await startConsoleListener({
        listen: consoleAt, tls: { ca: config.tls.ca, cert: config.tls.cert, key: config.tls.key }, log,
        routes: (app) => operatorConsole(app, { zone: config.zone, policy, snapshot, actions, log }),
      });
      probe.log.info({ event: "console_listening", url: operatorListener.url }, `zone console (mTLS, identities with policy console: view or operate) at ${operatorListener.url}/console`);
    }
    worker = startSyncWorker(config, { store, log: probe.log, notDurable, ...(overrides.holder ? { holder: overrides.holder } : {}), ...(reverse ? { reverse } : {}) });
    const running = worker;
    unobserve.push(observeLinks(metrics, () => running.status()));
    tls = startTlsReloader({
      name: "sync-client",
      paths: { ca: config.tls.paths.ca, cert: config.sync.tls.paths.cert, key: config.sync.tls.paths.key },
      current: { ca: config.tls.ca, cert: config.sync.tls.cert, key: config.sync.tls.key },
      intervalMs: config.tls.reloadCheckMs,
      log: probe.log,
      apply(pems) {
        running.reloadTls(pems);
        certificates.set(watched(pems));
      },
    });
    // The reverse listener and the console present the zone's server certificate: a rotated one serves new connections.
    const listening = [reverse, operatorListener].filter((l) => l !== undefined);
    if (listening.length > 0) {
      serverTls = startTlsReloader({
        name: "sync-server",
        paths: config.tls.paths,
        current: { ca: config.tls.ca, cert: config.tls.cert, key: config.tls.key },
        intervalMs: config.tls.reloadCheckMs,
        log: probe.log,
        apply: (pems) => {
          for (const l of listening) l.reloadTls(pems);
        },
      });
    }
  } catch (err) {
    for (const stop of unobserve) stop();
    serverTls?.close();
    await operatorListener?.close();
    await reverse?.close();
    durability?.close();
    await probe?.close();
    if (!overrides.store) await store.close();
    throw err;
  }
  const started = { worker, probe, tls: tls!, durability: durability!, reverse, operatorListener };
  return {
    worker,
    store,
    probeUrl: probe.url,
    reverseUrl: reverse?.url,
    consoleUrl: operatorListener?.url,
    log: probe.log,
    metrics,
    reloadTls: async () => {
      await serverTls?.check("signal");
      return started.tls.check("signal");
    },
    async stop() {
      started.tls.close();
      serverTls?.close();
      started.durability.close();
      await started.operatorListener?.close();
      await started.worker.stop();
      await started.reverse?.close();
      await started.probe.close();
      for (const stop of unobserve) stop();
      if (!overrides.store) await store.close();
    },
  };
}

/** `bsfg-sync --config <zone.yaml>`. */
export async function main(argv = process.argv.slice(2)): Promise<void> {
  const config = configFromCommandLine("bsfg-sync", argv);
  const tracing = startTracing({ serviceName: "bsfg-sync", zone: config.zone });
  // Before start-up: Node's default for SIGHUP ends the process (see @bsfg/boundary's main).
  let reload: () => Promise<unknown> = async () => undefined;
  onReloadSignal(() => reload());
  const running = await startSyncDeployable(config);
  reload = () => running.reloadTls();
  running.log.info({ event: "tracing", enabled: tracing.enabled }, tracing.enabled ? "tracing: OTLP export on" : "tracing: off");
  onStopSignal(async () => {
    await running.stop();
    await tracing.shutdown();
  }, running.log);
}
