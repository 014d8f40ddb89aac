import { spawn, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { startDeployable, type RunningDeployable } from "@bsfg/boundary";
import { createBsfgClient, type BsfgClient, type BsfgClientOptions } from "@bsfg/client";
import { loadZoneConfig, type ZoneConfig } from "@bsfg/config";
import { ensureDevPki, type DevPki } from "@bsfg/pki";
import { startSyncDeployable, type LinkStatus, type RunningSync } from "@bsfg/replication";
import { freePort, pollUntil, startNatsServer, startTcpProxy, type NatsServerHandle, type TcpProxy } from "@bsfg/testkit";
import { readFileSync } from "node:fs";
import { estateDocuments, type ZoneEndpoints } from "./documents.js";
import { estateIdentities, threeZoneEstate, type EstateTopology } from "./topology.js";

export interface TestEstateOptions {
  /** Scratch directory: PKI and zone files. */
  readonly dir: string;
  readonly topology?: EstateTopology;
  /** A TCP proxy between every receiver and sender, to stall or cut links. */
  readonly proxies?: boolean;
  /** Start a sync worker in each zone's process right away (default true). */
  readonly sync?: boolean;
  /** Merged into every zone's storage section (e.g. stream capacities). */
  readonly storage?: Record<string, unknown>;
  /** More configuration per zone (e.g. sync.pageLimit). */
  readonly extra?: (zone: string) => Record<string, unknown>;
  /** nats-server file store limit per zone (JetStream reserves each stream's max_bytes from it). */
  readonly maxFileStore?: string;
}

/** A sync worker replica: in this process or a child process. */
export interface SyncReplica {
  readonly holder: string;
  status(): Promise<LinkStatus[]>;
  /** Graceful stop (in-process) or SIGTERM and wait (child). */
  stop(): Promise<void>;
  /** Child replicas only: SIGKILL and wait. */
  kill(): Promise<void>;
  /** Child replicas only: start the process again after it ended; resolves when it is ready. */
  restart(): Promise<void>;
  /** Child replicas only: its JSON log lines so far. */
  readonly logLines: Array<Record<string, unknown>>;
}

export interface TestZone {
  readonly name: string;
  readonly nats: NatsServerHandle;
  readonly configPath: string;
  readonly config: ZoneConfig;
  /** The all-in-one services (ingest, egress, ledger) of the zone, in this process; /metrics on `services.server.healthUrl`. */
  readonly services: RunningDeployable;
  readonly url: string;
  readonly syncs: SyncReplica[];
}

export interface TestEstate {
  readonly zones: Readonly<Record<string, TestZone>>;
  readonly pki: DevPki;
  /** The proxy `receiver` reaches `sender` through (with `proxies: true`). */
  proxy(receiver: string, sender: string): TcpProxy;
  /** A client of `zone` as `identity` (a producer, or a zone's own identity). */
  client(zone: string, identity: string, options?: Pick<BsfgClientOptions, "interceptors">): BsfgClient;
  /** Starts one more sync replica for `zone`; `child` runs `syncBin` in a child process. */
  startSync(zone: string, opts?: { holder?: string; child?: { syncBin: string } }): Promise<SyncReplica>;
  dispose(): Promise<void>;
}

/** A whole estate on this machine: a nats-server per zone, the zone's services in this process, dev PKI, links as configured by the topology. */
export async function startTestEstate(opts: TestEstateOptions): Promise<TestEstate> {
  const topology = opts.topology ?? threeZoneEstate;
  const pki = await ensureDevPki(join(opts.dir, "pki"), { identities: estateIdentities(topology) });
  const nats: Record<string, NatsServerHandle> = {};
  const endpoints: Record<string, ZoneEndpoints> = {};
  const proxies = new Map<string, TcpProxy>();
  const clients: BsfgClient[] = [];
  const zones: Record<string, TestZone> = {};
  const disposers: Array<() => Promise<unknown>> = [];

  const dispose = async () => {
    for (const client of clients.splice(0)) client.close();
    for (const zone of Object.values(zones)) await Promise.allSettled(zone.syncs.splice(0).map((s) => s.stop()));
    await Promise.allSettled(Object.values(zones).map((z) => z.services.stop()));
    await Promise.allSettled([...proxies.values()].map((p) => p.close()));
    await Promise.allSettled(Object.values(nats).map((n) => n.dispose()));
    await Promise.allSettled(disposers.map((d) => d()));
  };

  try {
    for (const zone of topology.zones) {
      nats[zone] = await startNatsServer({ domain: zone, maxFileStore: opts.maxFileStore ?? "4GB" });
      const port = await freePort();
      const address = `127.0.0.1:${port}`;
      endpoints[zone] = {
        nats: nats[zone].url,
        // The all-in-one service serves every verb; the split addresses are not started.
        listen: { zone: address, ingest: address, egress: address, ledger: address },
        health: { zone: `127.0.0.1:${await freePort()}`, ingest: address, egress: address, ledger: address, sync: "127.0.0.1:0" },
      };
    }
    for (const receiver of topology.zones) {
      for (const sender of topology.zones) {
        if (!opts.proxies || receiver === sender) continue;
        const target = Number(endpoints[sender]!.listen.zone.split(":")[1]);
        proxies.set(`${receiver}<-${sender}`, await startTcpProxy({ targetPort: target }));
      }
    }
    const peerUrl = (receiver: string, sender: string) => {
      const proxy = proxies.get(`${receiver}<-${sender}`);
      return `https://localhost:${proxy ? proxy.port : endpoints[sender]!.listen.zone.split(":")[1]}`;
    };
    const documents = estateDocuments({
      topology, endpoints, peerUrl, pki: { caCert: pki.caCert, files: pki.files },
      // JetStream reserves each stream's max_bytes from the file store limit.
      storage: { streams: { operational: { maxBytes: "1GiB" }, audit: { maxBytes: "128MiB" }, documents: { maxBytes: "512MiB" } }, ...opts.storage },
      extra: (zone) => ({ shutdownGrace: "3s", logLevel: "warn", ...opts.extra?.(zone) }),
    });
    for (const zone of topology.zones) {
      const doc = documents[zone]!;
      const configPath = join(opts.dir, `${zone}.yaml`);
      await writeFile(configPath, JSON.stringify(doc, null, 2));
      const config = loadZoneConfig(configPath);
      const services = await startDeployable("zone", config, { logStream: sink() });
      zones[zone] = { name: zone, nats: nats[zone]!, configPath, config, services, url: services.server.url.replace("127.0.0.1", "localhost"), syncs: [] };
    }
  } catch (err) {
    await dispose();
    throw err;
  }

  const estate: TestEstate = {
    zones,
    pki,
    proxy(receiver, sender) {
      const proxy = proxies.get(`${receiver}<-${sender}`);
      if (!proxy) throw new Error(`no proxy ${receiver} <- ${sender} (start the estate with proxies: true)`);
      return proxy;
    },
    client(zone, identity, options = {}) {
      const files = pki.files[identity];
      if (!files) throw new Error(`no certificate for ${identity}`);
      const client = createBsfgClient({
        url: zones[zone]!.url,
        tls: { ca: readFileSync(pki.caCert), cert: readFileSync(files.cert), key: readFileSync(files.key) },
        ...options,
      });
      clients.push(client);
      return client;
    },
    async startSync(zoneName, { holder, child } = {}) {
      const zone = zones[zoneName]!;
      const name = holder ?? `${zoneName}-sync-${zone.syncs.length + 1}`;
      // The first in-process replica reports into the zone's metrics, as in the all-in-one process.
      const replica = child ? await childSync(zone, name, child.syncBin, opts.dir) : await inProcessSync(zone, name, zone.syncs.length === 0);
      zone.syncs.push(replica);
      return replica;
    },
    dispose,
  };
  if (opts.sync !== false) for (const zone of topology.zones) await estate.startSync(zone);
  return estate;
}

async function inProcessSync(zone: TestZone, holder: string, sharedMetrics: boolean): Promise<SyncReplica> {
  const running: RunningSync = await startSyncDeployable(zone.config, { holder, logStream: sink(), healthListen: "127.0.0.1:0", ...(sharedMetrics ? { metrics: zone.services.metrics } : {}) });
  return {
    holder,
    status: async () => running.worker.status(),
    stop: () => running.stop(),
    kill: () => Promise.reject(new Error("an in-process replica cannot be killed; start it with child")),
    restart: () => Promise.reject(new Error("an in-process replica cannot be restarted; start another")),
    logLines: [],
  };
}

/** A sync replica as its own process (`node <syncBin> --config <file>`), with its own probe port. */
async function childSync(zone: TestZone, holder: string, syncBin: string, dir: string): Promise<SyncReplica> {
  const probePort = await freePort();
  const doc = JSON.parse(readFileSync(zone.configPath, "utf8")) as Record<string, Record<string, unknown>>;
  doc.health = { ...doc.health, sync: `127.0.0.1:${probePort}` };
  doc.logLevel = "info" as never;
  const configPath = join(dir, `${zone.name}-${holder}.yaml`);
  await writeFile(configPath, JSON.stringify(doc, null, 2));
  const logLines: Array<Record<string, unknown>> = [];
  let process_: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const start = () => {
    const child = spawn(process.execPath, [syncBin, "--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
    let buffered = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) if (line.trim()) logLines.push(JSON.parse(line) as Record<string, unknown>);
    });
    child.stderr!.on("data", (chunk: Buffer) => logLines.push({ stderr: chunk.toString("utf8") }));
    exited = new Promise((resolve) => child.once("exit", () => resolve()));
    process_ = child;
  };
  const url = `http://127.0.0.1:${probePort}`;
  const startReady = async () => {
    start();
    await pollUntil(() => fetch(`${url}/readyz`).then((r) => r.ok), { timeoutMs: 20_000, what: `sync replica ${holder} ready` });
  };
  await startReady();
  const signal = async (sig: NodeJS.Signals) => {
    if (process_ && process_.exitCode === null && process_.signalCode === null) process_.kill(sig);
    await exited;
  };
  return {
    holder,
    status: async () => ((await (await fetch(`${url}/links`)).json()) as { links: LinkStatus[] }).links,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    restart: startReady,
    logLines,
  };
}

/** Service logs go nowhere in tests unless a test collects them itself. */
function sink(): Writable {
  return new Writable({ write: (_chunk, _encoding, done) => done() });
}
